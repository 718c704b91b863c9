"""What the testcases measure, parsed and computed without I/O where it can be: interrupts,
iperf3 and sockperf results, KVM traces, per-thread CPU, kernel messages, throughput and
interrupt cost, and the probes that take them through a shell."""
