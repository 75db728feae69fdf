"""File handling shared by the command-line tools: safe output writing, input listing, one-line errors.

Standard library only, so every component's CLI can use it without an upward import."""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys

# name of the temporary file an output is written to before it is renamed into place; a process killed in
# between leaves one behind, which input listing skips (hidden file) and which never takes an output's name
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")


def describe_error(exc: BaseException, subject=None) -> str:
    """One line for an error: the message, prefixed by the exception type unless it is a plain ``OSError`` /
    ``ValueError`` whose message already says what is wrong. No traceback. ``subject``: the file the line is
    about (printed before it), left out of the message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        same = subject is not None and os.fspath(exc.filename) == os.fspath(subject)
        return exc.strerror if same else f"{exc.strerror}: {exc.filename}"
    if name == "UnidentifiedImageError":
        return "not an image file that Pillow can read"
    if type(exc) in (OSError, ValueError, FileNotFoundError, FileExistsError) and text:
        return text
    return f"{name}: {text}" if text else name


def temp_name(path: str) -> str:
    """The temporary name beside ``path`` that an atomic write goes through."""
    folder, base = os.path.split(os.path.realpath(path))
    return os.path.join(folder, f".{base}.{secrets.token_hex(8)}.tmp")


def write_file(path, data: bytes, *, overwrite: bool = False, hint: str = "pass --overwrite to replace it") -> None:
    """Write ``data`` to ``path`` atomically: into a temporary file beside it, then renamed into place. Without
    ``overwrite`` an existing ``path`` is never replaced (FileExistsError, with ``hint``), even when it appears
    after the caller checked. A symbolic link is written through (its target is replaced, as ``open(path, "wb")``
    would), and a replaced file keeps its permission bits; a new file gets the umask's. Errors name ``path``,
    never the temporary file. On any error or Ctrl-C the temporary file is removed."""
    given = os.fspath(path)
    if not given:
        raise ValueError("the output path is empty")
    if given.endswith(("/", os.sep)) or os.path.isdir(given):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file name", given)
    path = os.path.realpath(given)  # what the OS will write: "sub/../a.jpg" is "a.jpg" even when sub is missing
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", given)
    tmp = temp_name(path)
    try:
        try:
            with open(tmp, "xb") as handle:  # created like any new file, so the umask applies (unlike mkstemp)
                handle.write(data)
            if overwrite:
                try:
                    os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # a private file stays private
                except FileNotFoundError:
                    pass
                os.replace(tmp, path)
                return
            try:
                os.link(tmp, path)  # atomic and fails if path exists: no check-then-write race
            except FileExistsError:
                raise FileExistsError(f"{given} exists; {hint}") from None
            except OSError:  # file system without hard links
                if os.path.lexists(path):
                    raise FileExistsError(f"{given} exists; {hint}") from None
                os.replace(tmp, path)
        except OSError as exc:
            if exc.filename in (tmp, path):  # name the target, not the temporary file
                raise type(exc)(exc.errno, exc.strerror or str(exc), given) from None
            raise
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def image_extensions() -> set[str]:
    """File name extensions (lower case, with the dot) of the formats Pillow can open."""
    from PIL import Image

    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def list_folder(folder: str, *, recursive: bool, skip: str | None = None) -> list[str]:
    """Image files in ``folder`` (by extension, sorted; hidden files, temporary files and anything that is not a
    regular file, such as a named pipe, skipped), and in its sub-folders when ``recursive`` (hidden sub-folders
    skipped, and the folder ``skip`` (a real path), e.g. the output folder)."""
    extensions = image_extensions()
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = (sorted(d for d in dirs if not d.startswith(".")
                          and (skip is None or os.path.realpath(os.path.join(root, d)) != skip))
                   if recursive else [])
        found += [path for path in (os.path.join(root, f) for f in sorted(files)
                                    if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions)
                  if os.path.isfile(path)]
    return found


def error(prog: str, message: str) -> None:
    """Print one error line for command ``prog``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
