"""The virtual lab: the processes `hil lab up` starts and supervises (labgrid's coordinator and
exporter, the boards' QEMUs, their cables, network, TFTP and SSH servers, the power switch and
its relay, the lab-host VM), each a service a real lab host would run."""
