"""Markdown tables shaped like those of Prakash, PhD thesis, Brandeis 2019 (Tables 3.1, 4.1, 4.6-4.11) and a plot
of accuracy against the defense's distortion (Dziedzic, dissertation, U. Chicago 2019, Figure 3.1), from the JSON
results of :func:`runner.evaluate`."""
from __future__ import annotations

import math

# Prakash et al., CVPR 2018 (thesis Table 4.6): destruction rate of PD + R-CAM + DWT on ResNet-50
# (|L2| 0.02-0.06, oblivious attacks)
PAPER_DESTRUCTION = {"fgsm": 0.769, "igsm": 0.927, "deepfool": 0.948, "cw": 0.981}


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _rate(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; a '|' inside a cell (as in |L2|) is escaped so it does not split the cell."""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|"] + [line(r) for r in rows])


def table_41(results: dict, defense: str) -> str:
    """Table 4.1 shape: per attack, measured RMSE, undefended accuracy, accuracy with the defense (single, Ens)."""
    d = results["defenses"][defense]
    rows = [["Clean", "0.000", "100.0", _pct(d["results"]["clean"]["acc_single"]),
             _pct(d["results"]["clean"]["acc_ens"])]]
    for a, info in results["attacks"].items():
        r = d["results"][a]
        rows.append([info["label"], f"{info['rmse_mean']:.4f}", _pct(info["undefended_acc"]),
                     _pct(r["acc_single"]), _pct(r["acc_ens"])])
    ens = f"Ens-{results['config']['draws']}"
    return _table(["Attack", "|L2| (RMSE)", "No defense", "Single", ens], rows)


def table_46(results: dict, key: str = "dr_single") -> str:
    """Table 4.6 shape: destruction rate of every defense (rows) against every attack (columns)."""
    attacks = list(results["attacks"])
    rows = [[d["label"], d["group"]] + [_rate(d["results"][a][key]) for a in attacks]
            for d in results["defenses"].values()]
    return _table(["Defense", "kind"] + [results["attacks"][a]["label"] for a in attacks], rows)


def table_accuracy(results: dict, key: str = "acc_single") -> str:
    """Top-1 accuracy (%) of every defense on clean and adversarial images, with its clean-image distortion."""
    attacks = list(results["attacks"])
    rows = []
    for d in results["defenses"].values():
        clean = d["results"]["clean"]
        rows.append([d["label"], f"{clean['rmse']:.4f}"] + [_pct(clean[key])]
                    + [_pct(d["results"][a][key]) for a in attacks]
                    + [_pct(sum(d["results"][a][key] for a in attacks) / len(attacks))])
    return _table(["Defense", "RMSE on clean", "Clean"] + [results["attacks"][a]["label"] for a in attacks]
                  + ["mean adv."], rows)


def _codec_summary(cells: dict, attacks: list[str]) -> dict:
    """Mean over the attacks of one defense's accuracy and distortion (MSE in 0..255 units), plus clean accuracy."""
    adv = [cells[a] for a in attacks]
    out = {k: sum(r[k] for r in adv) / len(adv) for k in ("acc_single", "ssim", "psnr")}
    out["mse"] = sum((255 * r["rmse"]) ** 2 for r in adv) / len(adv)
    out["clean_acc"] = cells["clean"]["acc_single"]
    return out


def table_31(results: dict) -> str:
    """Table 3.1 shape: accuracy over all attacks and quality (vs the clean image) of JPEG codecs on adversarial
    images; MSE in 0..255 units, PSNR in dB, SSIM."""
    rows = []
    for name in ("jpeg", "msroi-jpeg", "aug-msroi-jpeg"):
        d = results["defenses"].get(name)
        if d is None:
            continue
        r = _codec_summary(d["results"], list(results["attacks"]))
        rows.append([d["label"], _pct(r["acc_single"]), f"{r['mse']:.1f}", f"{r['ssim']:.3f}", f"{r['psnr']:.2f}"])
    return _table(["Codec", "Accuracy (%)", "MSE", "SSIM", "PSNR (dB)"], rows)


def table_31_choice(results: dict) -> dict | None:
    """Protocol of Prakash et al., DCC 2018 (thesis sec. 3.8): the JPEG quality with the best mean adversarial
    accuracy, and for each semantic codec the quality range whose mean PSNR (vs the clean images) is closest to
    that JPEG's. ``None`` when the run has no Table 3.1 sweeps. Returns {"jpeg": {column: summary},
    "semantic": {codec: {column: summary}}, "chosen": {"JPEG": column, codec: column}}."""
    from .defenses import TABLE_31_JPEG, TABLE_31_SEMANTIC

    ab = results.get("ablations") or {}
    if TABLE_31_JPEG not in ab or TABLE_31_SEMANTIC not in ab:
        return None
    attacks = list(results["attacks"])
    jpeg = {c: _codec_summary(cells, attacks) for c, cells in ab[TABLE_31_JPEG]["columns"].items()}
    semantic: dict[str, dict] = {}
    for column, cells in ab[TABLE_31_SEMANTIC]["columns"].items():  # "Aug-MSROI 10-40" -> codec "Aug-MSROI"
        semantic.setdefault(column.rsplit(" ", 1)[0], {})[column] = _codec_summary(cells, attacks)
    best = max(jpeg, key=lambda c: jpeg[c]["acc_single"])
    chosen = {"JPEG": best}
    for codec, columns in semantic.items():
        chosen[codec] = min(columns, key=lambda c: abs(columns[c]["psnr"] - jpeg[best]["psnr"]))
    return {"jpeg": jpeg, "semantic": semantic, "chosen": chosen}


# Prakash et al., DCC 2018 (thesis Table 3.1), accuracy %, 300 images
PAPER_TABLE_31 = {"JPEG": 52, "MS-ROI": 65, "Aug-MSROI": 82}


def table_31_setting(choice: dict) -> str:
    """Table 3.1 in the paper's setting (rows: the chosen JPEG quality and the PSNR-matched semantic JPEGs)."""
    rows = []
    for codec, column in choice["chosen"].items():
        r = choice["jpeg"][column] if codec == "JPEG" else choice["semantic"][codec][column]
        rows.append([codec, column, _pct(r["acc_single"]), str(PAPER_TABLE_31.get(codec, "-")), _pct(r["clean_acc"]),
                     f"{r['mse']:.1f}", f"{r['ssim']:.3f}", f"{r['psnr']:.2f}"])
    return _table(["Codec", "setting", "Accuracy (%)", "paper", "Clean acc. (%)", "MSE", "SSIM", "PSNR (dB)"], rows)


def table_ablation(results: dict, title: str) -> str:
    """Tables 4.7-4.11 shape: rows clean + attacks, one column per setting (single-draw accuracy, %)."""
    ab = results["ablations"][title]
    cols = list(ab["columns"])
    names = ["clean"] + list(results["attacks"])
    labels = ["Clean"] + [results["attacks"][a]["label"] for a in results["attacks"]]
    rows = [[lab] + [_pct(ab["columns"][c][n]["acc_single"]) for c in cols] for n, lab in zip(names, labels)]
    rows.append(["mean adv."] + [_pct(sum(ab["columns"][c][n]["acc_single"] for n in names[1:]) / (len(names) - 1))
                                 for c in cols])
    return _table(["Attack"] + cols, rows)


def _swept_linf(a: dict) -> bool:
    """Whether a swept attack's points are L-inf budgets (else |L2| scalings; reports before that have no norm)."""
    return a.get("norm", "inf") == "inf"


def _budget_label(a: dict, p: dict) -> str:
    """A sweep point's column name: its L-inf budget, or the |L2| its minimal perturbations were scaled to."""
    if _swept_linf(a):
        return f"{255 * p['eps']:.3g}/255" + (" (main)" if p["eps"] == a["own_budget"] else "")
    if p["rmse_target"] is None:
        return "minimal (main)"
    return f"{p['rmse_target']:g}" + (" (paper)" if p["rmse_target"] == a.get("paper_l2") else "")


def table_budget_sweep(results: dict, attack: str) -> str:
    """One swept attack: per L-inf budget or |L2| (columns) the measured RMSE, the attack's success on the
    undefended model, each defense's destruction rate (single draw) with its top-1 accuracy (%) in brackets, and
    its destruction rate among the images it keeps right when they are clean."""
    sw = results["budget_sweep"]
    a = sw["attacks"][attack]
    points = a["points"]
    header = ["L-inf budget" if _swept_linf(a) else "|L2| (RMSE) scaled to"] + \
        [_budget_label(a, p) for p in points]
    rows = [["RMSE (mean)"] + [f"{p['rmse_mean']:.4f}" for p in points],
            ["Success on undefended (%)"] + [_pct(1 - p["undefended_acc"]) for p in points]]
    rows += [[f"{label}: DR (acc. %)"] + [f"{_rate(p['defenses'][d]['dr_single'])} "
                                            f"({_pct(p['defenses'][d]['acc_single'])})" for p in points]
             for d, label in sw["defenses"].items()]
    rows += [[f"{label} (clean {_pct(sw['clean_acc_single'][d])}%): DR among images kept right clean"]
             + [_rate(p["defenses"][d]["dr_kept_single"]) for p in points] for d, label in sw["defenses"].items()]
    return _table(header, rows)


def table_adaptive(results: dict) -> str:
    """Non-adaptive vs adaptive (BPDA+EOT) PGD L-inf accuracy for each defense, same images, next to the
    defense's accuracy on the clean images (the most an attack can leave it; '-' in reports made before it was
    recorded)."""
    ad = results["adaptive"]
    ens = f"Ens-{results['config']['draws']}"
    rows = [[r["label"], _pct(r.get("clean", {}).get("acc_single")), _pct(r["undefended_acc"]),
             _pct(r.get("oblivious", {}).get("acc_single")), _pct(r.get("oblivious", {}).get("acc_ens")),
             _pct(r["adaptive"]["acc_single"]), _pct(r["adaptive"]["acc_ens"])]
            for r in ad["defenses"].values()]
    return _table(["Defense", "Defense on clean single", "No defense (adaptive x)", "Oblivious PGD single",
                   f"Oblivious PGD {ens}", "Adaptive single", f"Adaptive {ens}"], rows)


def markdown(results: dict) -> str:
    c = results["config"]
    out = [f"# Defense evaluation: EfficientNet-Lite0, {results['n_evaluated']} ImageNet images",
           "",
           f"Command: `{results['command']}`",
           "",
           f"Images: {results['n_loaded']} loaded (subset seed {c['seed']}), clean top-1 of the undefended model "
           f"{_pct(results['clean_top1_loaded'])}%; the {results['n_evaluated']} classified correctly are evaluated "
           f"(so 'No defense' on clean images is 100%). Ens-{c['draws']}: majority vote over {c['draws']} draws "
           f"of a stochastic defense (deterministic defenses: one draw). "
           f"Destruction rate (Prakash et al., DCC 2018): fraction of the successful adversarial images that the "
           f"defense brings back to the true class.",
           "",
           "## Threat model (non-adaptive tables)",
           "",
           "Untargeted white-box attacks on the undefended classifier (the attacker ignores the defense: "
           "'oblivious'), through ART " + results["versions"]["art"] + ". Pixel values in [0, 1]; |L2| is the "
           "L2-normalised RMSE ||x - x'||_2 / sqrt(3 H W) measured on the adversarial images.",
           "",
           _table(["Attack", "Budget / settings", "RMSE (mean)", "L-inf (mean)", "Success on undefended"],
                  [[a["label"], a["threat"], f"{a['rmse_mean']:.4f}", f"{a['linf_mean']:.4f}",
                    _pct(1 - a["undefended_acc"])] for a in results["attacks"].values()]),
           ""]
    headline = c["headline"]
    if headline in results["defenses"]:
        out += [f"## Table 4.1 shape: {results['defenses'][headline]['label']}", "", table_41(results, headline), ""]
    out += ["## Table 4.6 shape: destruction rate, single draw", "", table_46(results, "dr_single"), "",
            f"## Destruction rate, Ens-{c['draws']}", "", table_46(results, "dr_ens"), "",
            "## Top-1 accuracy (%), single draw", "", table_accuracy(results, "acc_single"), "",
            f"## Top-1 accuracy (%), Ens-{c['draws']}", "", table_accuracy(results, "acc_ens"), "",
            "## Table 3.1 shape: JPEG codecs on the adversarial images (mean over attacks, single draw)", "",
            table_31(results), ""]
    choice = table_31_choice(results)
    if choice:
        out += [f"## Table 3.1 in the paper's setting ({results['ablation_images']} images, single draw)", "",
                "Protocol of Prakash et al. (DCC 2018): the JPEG quality with the best accuracy on the adversarial "
                "images (mean over the attacks), the semantic JPEGs at the quality range whose PSNR is closest to "
                "it. Accuracy, MSE (0..255), SSIM and PSNR against the clean image, means over the attacks; every "
                "setting tried is in the two ablation tables below and in the accuracy-vs-PSNR plot.", "",
                table_31_setting(choice), ""]
    if results.get("budget_sweep"):
        sw = results["budget_sweep"]
        out += [f"## Destruction rate against the attack budget ({sw['n_images']} images, single draw)", "",
                "The budgeted attacks again at other L-inf radii (step size and early-stop cap scaled with the "
                "radius; '(main)' is the budget of the tables above)" + (
                    ", the minimal-perturbation attacks with each image's perturbation scaled to other |L2| (RMSE; "
                    "'(paper)': Prakash et al., CVPR 2018, Table 4.1)"
                    if not all(map(_swept_linf, sw["attacks"].values())) else "")
                + ", same oblivious threat model. Prakash et al. (CVPR 2018; thesis "
                "Table 4.6) report PD + R-CAM + DWT at " + ", ".join(
                    f"{sw['attacks'][k]['label']} {v}" for k, v in PAPER_DESTRUCTION.items()
                    if k in sw["attacks"]) + " (ResNet-50, |L2| 0.02-0.06). A defense that gets a clean image "
                "wrong rarely restores its adversarial version, so its clean accuracy roughly caps its "
                "destruction rate; the last rows count only the images it keeps right when clean.", ""]
        for attack, a in sw["attacks"].items():
            out += [f"### {a['label']}", "", table_budget_sweep(results, attack), ""]
    if results.get("ablations"):
        out += [f"## Ablations on {results['ablation_images']} images (single draw, accuracy %)", ""]
        for title in results["ablations"]:
            out += [f"### {title}", "", table_ablation(results, title), ""]
    if results.get("adaptive"):
        ad = results["adaptive"]
        out += [f"## Adaptive attack: PGD L-inf {ad['eps'] * 255:.0f}/255, {ad['steps']} steps of "
                f"{ad['step_size'] * 255:.2f}/255, BPDA + EOT ({ad['eot']} draws), on {ad['n_images']} images", "",
                "Untargeted white-box attack that knows the defense: the purifier's backward pass is the identity "
                "(BPDA), the gradient is summed over EOT draws of its randomness (one draw for a deterministic "
                "defense, whose draws would all be alike). 'Oblivious' is the non-adaptive "
                "PGD row of the tables above restricted to the same images.", "", table_adaptive(results), ""]
    t = results["timing_s"]
    out += ["## Run time", "", ", ".join(f"{k} {v:.0f} s" for k, v in t.items()), ""]
    return "\n".join(out)


def annotate_without_overlap(fig, ax, labels: dict[tuple[float, float], str], fontsize: int = 7,
                             colors: dict[tuple[float, float], str] | None = None) -> None:
    """Write each label next to its point (data coordinates), in ``colors[point]`` if given: of the places
    around it, at growing distances, the first whose box stays inside the axes and covers no point and no label
    written before, else the one covering the least; a label set away from its point gets a thin leader line."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    directions = [(1, 0.4), (1, -1), (-1, 0.4), (-1, -1), (0.3, 1.4), (0.3, -2), (1, 1.4), (-1, 1.4), (1, -2),
                  (-1, -2)]
    places = [(r * dx, r * dy) for r in (4, 12, 22, 34, 48) for dx, dy in directions]
    fig.canvas.draw()  # settle the axis limits and the layout: the points' screen positions are final
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [Bbox.from_extents(px - 3, py - 3, px + 3, py + 3) for px, py in ax.transData.transform(list(labels))]

    def covered(box) -> float:  # area over other boxes; leaving the axes counts as its whole area
        inside = Bbox.intersection(box, frame)
        outside = box.width * box.height - (inside.width * inside.height if inside else 0.0)
        return outside + sum(both.width * both.height for other in taken
                             if (both := Bbox.intersection(box, other)) is not None)

    for (x, y), text in sorted(labels.items(), key=lambda item: -item[0][1]):
        best = None
        for n, (dx, dy) in enumerate(places):
            note = ax.annotate(text, (x, y), fontsize=fontsize, xytext=(dx, dy), textcoords="offset points",
                               ha="left" if dx > 0 else "right", va="center", color=(colors or {}).get((x, y)),
                               arrowprops=None if n < len(directions) else
                               {"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 3})
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer)  # the text alone, not its leader line
            cost = covered(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        taken.append(best[2])


def plot_accuracy_vs_distortion(results: dict, path) -> None:
    """After Dziedzic, dissertation (U. Chicago 2019), Figure 3.1: mean adversarial accuracy of each defense
    against its distortion on clean images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    colors = {"ours": "tab:red", "lossy channel": "tab:orange", "peer (ART)": "tab:blue"}
    labels: dict[tuple[float, float], list[str]] = {}  # defenses with identical results share one label
    for d in results["defenses"].values():
        adv = [d["results"][a]["acc_single"] for a in results["attacks"]]
        x, y = d["results"]["clean"]["rmse"], 100 * sum(adv) / len(adv)
        ax.scatter(x, y, color=colors.get(d["group"], "gray"))
        labels.setdefault((round(x, 6), round(y, 6)), []).append(d["label"])
    present = {d["group"] for d in results["defenses"].values()}
    for group, color in colors.items():
        if group in present:
            ax.scatter([], [], color=color, label=group)
    ax.set_xlabel("defense distortion on clean images (RMSE, [0,1] units)")
    ax.set_ylabel("top-1 accuracy on adversarial images, mean over attacks (%)")
    ax.set_title(f"EfficientNet-Lite0, {results['n_evaluated']} images, oblivious attacks")
    ax.legend()
    fig.tight_layout()
    annotate_without_overlap(fig, ax, {xy: " = ".join(names) for xy, names in labels.items()})
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_budget_sweep(results: dict, path) -> None:
    """Destruction rate (single draw) of each sweep defense against the L-inf budget (or, for DeepFool and C&W,
    the measured |L2|), one panel per attack, with the published rate (Prakash et al., CVPR 2018) for
    PD + R-CAM + DWT where it reports one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sw = results["budget_sweep"]
    fig, axes = plt.subplots(1, len(sw["attacks"]), figsize=(6 * len(sw["attacks"]), 4.5), squeeze=False)
    for ax, (attack, a) in zip(axes[0], sw["attacks"].items()):
        linf = _swept_linf(a)
        eps = [255 * p["eps"] if linf else p["rmse_mean"] for p in a["points"]]
        for d, label in sw["defenses"].items():
            line, = ax.plot(eps, [p["defenses"][d]["dr_single"] for p in a["points"]], "o-", label=label)
            ax.plot(eps, [p["defenses"][d]["dr_kept_single"] for p in a["points"]], ":", color=line.get_color())
        if attack in PAPER_DESTRUCTION:
            ax.axhline(PAPER_DESTRUCTION[attack], color="gray", ls="--", label="paper: PD + R-CAM + DWT")
        if linf:
            ax.axvline(255 * a["own_budget"], color="gray", ls="-.", lw=0.8, label="budget of the main tables")
        else:
            ax.axvline(eps[0], color="gray", ls="-.", lw=0.8, label="minimal perturbation (main tables)")
            if a.get("paper_l2"):
                ax.axvline(a["paper_l2"], color="gray", ls=":", lw=0.8, label="paper's |L2|")
        ax.set_xscale("log", base=2)
        if linf:
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        else:  # powers of 2 print as 0.000976562: tick the measured points instead
            ax.set_xticks(eps, [f"{v:.2g}" for v in eps])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("L-inf budget (/255)" if linf else "|L2| (RMSE, measured)")
        ax.set_ylabel("destruction rate (single draw)")
        ax.set_ylim(0, 1.02)
        ax.set_title(a["label"])
    axes[0][0].plot([], [], "k:", label="same, among images kept right clean")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"EfficientNet-Lite0, {sw['n_images']} images, oblivious attacks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_codecs_accuracy_vs_psnr(choice: dict, results: dict, path) -> None:
    """After Prakash et al., DCC 2018 (thesis Figure 3.2a), against image quality: mean adversarial accuracy of
    JPEG at each quality and of the semantic JPEGs at each quality range, against their mean PSNR; the Table 3.1
    choices circled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    curves = {"JPEG": choice["jpeg"], **choice["semantic"]}
    labels, colors = {}, {}  # the quality or range of each point, in its codec's colour
    for (codec, columns), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:red")):
        points = sorted(columns.items(), key=lambda kv: kv[1]["psnr"])
        ax.plot([r["psnr"] for _, r in points], [100 * r["acc_single"] for _, r in points], "o-", color=color,
                label=codec)
        for column, r in points:
            xy = (r["psnr"], 100 * r["acc_single"])
            labels[xy], colors[xy] = column.split(" ")[-1], color
        best = columns[choice["chosen"][codec]]
        ax.scatter([best["psnr"]], [100 * best["acc_single"]], s=160, facecolors="none", edgecolors=color)
    ax.set_xlabel("PSNR of the decoded adversarial image vs the clean image (dB), mean over attacks")
    ax.set_ylabel("top-1 accuracy on adversarial images, mean over attacks (%)")
    ax.set_title(f"EfficientNet-Lite0, {results['ablation_images']} images: JPEG quality / semantic JPEG range")
    ax.legend()
    fig.tight_layout()
    annotate_without_overlap(fig, ax, labels, colors=colors)
    fig.savefig(path, dpi=120)
    plt.close(fig)
