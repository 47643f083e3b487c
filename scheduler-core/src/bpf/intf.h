/* Structs and constants shared by monitor.bpf.c and the Rust monitor
 * (scheduler-core/src/monitor/ebpf.rs mirrors them through the skeleton's
 * generated `types` module, so a layout change fails to compile there). */
#ifndef SLOKIT_INTF_H
#define SLOKIT_INTF_H

/* Kinds of socket events. */
enum slokit_event_kind {
	SLOKIT_EV_RECV = 1,
	SLOKIT_EV_SEND = 2,
};

/* Slots of the per-CPU counter map `counters`. */
enum slokit_counter {
	SLOKIT_CNT_RINGBUF_DROPS = 0, /* ringbuf reserve failed: event lost */
	SLOKIT_CNT_ACCT_FULL = 1,     /* cpu_acct insert failed */
	SLOKIT_CNT_NUDGES = 2,        /* wake-up records sent by slokit_switch */
	SLOKIT_NR_COUNTERS = 3,
};

/* Target processes are a bitmap over every possible tgid (PID_MAX_LIMIT on
 * 64-bit: 2^22), one bit each, in 64-bit words: 512 KiB. An array lookup is
 * inlined by the verifier, so the filter that runs on every socket call of
 * the machine costs a few instructions instead of a hash lookup. */
#define SLOKIT_TGID_LIMIT (1u << 22)
#define SLOKIT_TARGET_WORDS (SLOKIT_TGID_LIMIT / 64)
#define SLOKIT_MAX_THREADS 65536

/* One socket event of a target process, through the ring buffer. */
struct slokit_event {
	__u64 ts_ns;  /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 sock;   /* struct sock pointer: the socket id */
	__u32 tgid;
	__u32 tid;
	__s32 bytes;  /* the syscall's return value */
	__u32 kind;   /* enum slokit_event_kind */
};

/* On-CPU time of one thread of a target process (sched_switch). Its CPU
 * time at `now` is total_ns + (on_cpu ? now - last_in_ns : 0). */
struct slokit_cpu_acct {
	__u64 total_ns;
	__u64 last_in_ns;
	__u32 on_cpu;
	__u32 tgid;
};

#endif /* SLOKIT_INTF_H */
