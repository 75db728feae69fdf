int semjpeg_native_abi_version(void);
