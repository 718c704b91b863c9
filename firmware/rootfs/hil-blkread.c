// SPDX-License-Identifier: GPL-2.0
/*
 * hil-blkread: 4 KiB random direct reads from a block device, one synchronous reader per CPU,
 * for a fixed time; prints what each reader did.
 *
 *   hil-blkread DEVICE SECONDS CPUS
 *
 * fio's psync engine with numjobs=CPUS, iodepth=1, bs=4k, rw=randread, direct=1 and each job
 * pinned to its CPU. Debian's fio does not fit the guest's initramfs: it links Ceph's and
 * GlusterFS's client libraries (its package pulls 105 others, 61 MB of .debs).
 *
 * Output, one line per reader and a total (read by hil/measure/blkread.py):
 *   cpu 0 reads 1234 errors 0 seconds 1.000021
 *   total reads 4936 errors 0 seconds 1.000075
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64: the same offsets on every run for the same CPU. */
static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int reader(const char *device, double seconds, int cpu, int out)
{
	cpu_set_t set;
	uint64_t size, blocks, state = 0x9e3779b97f4a7c15ULL * (cpu + 1);
	unsigned long reads = 0, errors = 0;
	double t0, t;
	char line[128];
	void *buf;
	int fd, n;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "hil-blkread: cpu %d: sched_setaffinity: %s\n", cpu, strerror(errno));
		return 1;
	}
	fd = open(device, O_RDONLY | O_DIRECT);
	/* A block device's size, or a file's (for trying it out on a host). */
	if (fd < 0 || (off_t)(size = lseek(fd, 0, SEEK_END)) < 0) {
		fprintf(stderr, "hil-blkread: %s: %s\n", device, strerror(errno));
		return 1;
	}
	blocks = size / BLOCK;
	if (!blocks || posix_memalign(&buf, BLOCK, BLOCK)) {
		fprintf(stderr, "hil-blkread: %s: no block to read\n", device);
		return 1;
	}
	t0 = now();
	do {
		if (pread(fd, buf, BLOCK, (off_t)(next(&state) % blocks) * BLOCK) == BLOCK)
			reads++;
		else
			errors++;
		t = now();
	} while (t - t0 < seconds);
	n = snprintf(line, sizeof(line), "cpu %d reads %lu errors %lu seconds %.6f\n",
		     cpu, reads, errors, t - t0);
	/* One write per line: the lines of several readers never interleave. */
	return write(out, line, n) == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	int cpus, cpu, status, failed = 0, pipefd[2];
	unsigned long reads = 0, errors = 0, r, e;
	double seconds, s, longest = 0;
	char buf[4096], *p;
	ssize_t got, len = 0;

	if (argc != 4 || (seconds = atof(argv[2])) <= 0 || (cpus = atoi(argv[3])) < 1) {
		fprintf(stderr, "usage: hil-blkread DEVICE SECONDS CPUS\n");
		return 2;
	}
	if (pipe(pipefd))
		return 1;
	for (cpu = 0; cpu < cpus; cpu++) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			close(pipefd[0]);
			_exit(reader(argv[1], seconds, cpu, pipefd[1]));
		}
	}
	close(pipefd[1]);
	while ((got = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += got;
	buf[len] = '\0';
	while (wait(&status) > 0)
		failed |= !WIFEXITED(status) || WEXITSTATUS(status);
	fputs(buf, stdout);
	for (p = buf; sscanf(p, "cpu %*d reads %lu errors %lu seconds %lf", &r, &e, &s) == 3;
	     p = strchr(p, '\n') + 1) {
		reads += r;
		errors += e;
		if (s > longest)
			longest = s;
	}
	printf("total reads %lu errors %lu seconds %.6f\n", reads, errors, longest);
	return failed;
}
