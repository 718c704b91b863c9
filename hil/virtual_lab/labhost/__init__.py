"""An x86 lab-host VM: Debian's amd64 kernel under TCG, with systemd-udevd and QEMU's emulated
FTDI USB serial adapters on an xHCI controller, so that udev matching (`hil lab check`, labgrid's
exporter) runs against real udev devices.

- packages: the host packages it needs (Debian's amd64 kernel, QEMU for x86, udev, busybox);
- initramfs: a busybox initramfs that mounts this host's root read-only over virtio-9p;
- vm: the QEMU command line and the VM's life cycle;
- console: commands over the VM's serial console, with their output and exit codes.
"""
