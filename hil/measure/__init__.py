"""What the testcases measure, parsed and computed without I/O: interrupts, iperf3 and
sockperf results, KVM traces, per-thread CPU, kernel messages, throughput and interrupt cost.
hil/labgrid/probes.py takes them through a board's or guest's shell."""
