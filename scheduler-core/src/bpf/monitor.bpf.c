// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * slokit's black-box request monitor (the seed's Monitor, after its kprobes
 * on tcp_recvmsg/tcp_sendmsg; here BTF tracepoints, which need no kprobes,
 * no fentry and no tracefs):
 *
 *  - tp_btf/sock_recv_length and tp_btf/sock_send_length (sk, ret, flags):
 *    one event per receive/send of a target process into a ring buffer;
 *  - tp_btf/sched_switch: per-thread on-CPU time of target processes in a
 *    hash map user space reads (the two-level policy's credit is on-CPU
 *    time, so a sleeping request keeps its credit).
 *
 * Only processes whose tgid has its bit set in `targets` (set by user space)
 * are seen.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "intf.h"

#define AF_INET 2
#define AF_INET6 10
#define EAGAIN 11
#define MSG_PEEK 2

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Knobs, set by user space before load. */
const volatile bool inet_only = true;  /* only AF_INET/AF_INET6 sockets */
const volatile bool track_cpu = true;  /* maintain cpu_acct */
/* Wake the consumer per event (the two-level policy decides on each one);
 * false: user space drains the ring on a timer (baselines only count). */
const volatile bool wakeup = true;
/* The agent's tgid when its idle pollers watch this ring (0: they do not).
 * While a watcher is on one of its CPUs — an idle poller, or the agent's
 * event thread, which drains before it sleeps — an event needs no
 * wake-up of its own: the poller sees the producer position move and kicks
 * the agent on its CPU. The ring's wake-up is an irq_work self-interrupt
 * on the emitting CPU, then an IPI, paid on the function's CPU
 * (docs/measurements.md). */
const volatile __u32 agent_tgid = 0;
/* The agent's event thread (the one that loaded this program and drains). */
const volatile __u32 agent_tid = 0;

/* Bit c set: the agent's event thread or one of its idle pollers (its only
 * SCHED_IDLE threads) is on CPU c now (c < 64; kept by slokit_switch).
 * Cleared is always safe: events then wake the agent. */
__u64 agent_on_cpu = 0;

/* Present so the skeleton's `types` module carries the shared structs. */
struct slokit_event slokit_event_layout;
struct slokit_cpu_acct slokit_cpu_acct_layout;
enum slokit_counter slokit_counter_layout;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOKIT_TARGET_WORDS);
	__type(key, __u32);    /* tgid / 64 */
	__type(value, __u64);  /* bit tgid % 64: a target */
} targets SEC(".maps");

static __always_inline bool is_target(__u32 tgid)
{
	__u32 word = tgid / 64;
	__u64 *bits = bpf_map_lookup_elem(&targets, &word);

	return bits && (*bits >> (tgid % 64)) & 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLOKIT_MAX_THREADS);
	__type(key, __u32);  /* tid */
	__type(value, struct slokit_cpu_acct);
} cpu_acct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOKIT_NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);
	if (c)
		*c += 1;
}

/* A word per CPU whose only use is a locked read-modify-write: a full
 * memory barrier (x86 `lock xadd`; arm64's JIT fences fetch atomics). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fence_word SEC(".maps");

static __always_inline void full_fence(void)
{
	__u32 zero = 0;
	__u64 *w = bpf_map_lookup_elem(&fence_word, &zero);
	if (w)
		__sync_fetch_and_add(w, 0);
}

/* The submit flags of an event reserved (so the producer position already
 * moved): no wake-up while a watcher is on an agent CPU. The fence orders
 * the position's store before the load of the bits; slokit_switch clears a
 * bit (a locked op) before it reads the position, so either this sees the
 * bit cleared or the switch sees the event and nudges the agent. */
static __always_inline __u64 submit_flags(void)
{
	if (!wakeup)
		return BPF_RB_NO_WAKEUP;
	if (!agent_tgid)
		return 0;
	full_fence();
	return *(volatile __u64 *)&agent_on_cpu ? BPF_RB_NO_WAKEUP : 0;
}

static __always_inline int emit(struct sock *sk, int ret, __u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	if (!is_target(tgid))
		return 0;
	if (inet_only) {
		__u16 family = sk->__sk_common.skc_family;
		if (family != AF_INET && family != AF_INET6)
			return 0;
	}
	struct slokit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SLOKIT_CNT_RINGBUF_DROPS);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->sock = (__u64)sk;
	e->tgid = tgid;
	e->tid = (__u32)id;
	e->bytes = ret;
	e->kind = kind;
	bpf_ringbuf_submit(e, submit_flags());
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(slokit_recv, struct sock *sk, int ret, int flags)
{
	/* Only data received starts a request: not EOF (0), not errors, and
	 * not a MSG_PEEK, which consumes nothing (the host's poller peeks at
	 * requests before a worker receives them). */
	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	return emit(sk, ret, SLOKIT_EV_RECV);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(slokit_send, struct sock *sk, int ret, int flags)
{
	/* A would-block send wrote nothing and ends nothing. */
	if (ret == -EAGAIN)
		return 0;
	return emit(sk, ret, SLOKIT_EV_SEND);
}

#define SCHED_IDLE 5

static __always_inline bool is_watcher(struct task_struct *t, __u32 tgid)
{
	return tgid == agent_tgid && (t->pid == agent_tid || t->policy == SCHED_IDLE);
}

/* Keeps agent_on_cpu: after every switch, CPU c's bit says whether the
 * task now on it is a watcher (written only when that changes, so other
 * switches only read the word). When the bit goes off with events in the
 * ring the agent may not have seen, a nudge (a record shorter than an
 * event, which user space skips) wakes the agent the ring's way. From one
 * watcher to the other nothing changes: the agent drains as it runs, a
 * poller kicks when the producer moved since its last kick. */
static __always_inline void track_watchers(struct task_struct *next, __u32 next_tgid)
{
	__u32 cpu = bpf_get_smp_processor_id();

	if (!agent_tgid || cpu >= 64)
		return;
	__u64 bit = 1ull << cpu;
	bool was = *(volatile __u64 *)&agent_on_cpu & bit;
	bool now = is_watcher(next, next_tgid);
	if (was == now)
		return;
	if (now) {
		__sync_fetch_and_or(&agent_on_cpu, bit);
		return;
	}
	__sync_fetch_and_and(&agent_on_cpu, ~bit);
	if (bpf_ringbuf_query(&events, BPF_RB_PROD_POS) !=
	    bpf_ringbuf_query(&events, BPF_RB_CONS_POS)) {
		__u32 nudge = 0;
		if (!bpf_ringbuf_output(&events, &nudge, sizeof(nudge), BPF_RB_FORCE_WAKEUP))
			count(SLOKIT_CNT_NUDGES);
	}
}

SEC("tp_btf/sched_switch")
int BPF_PROG(slokit_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	if (!track_cpu)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u32 prev_tgid = prev->tgid, next_tgid = next->tgid;
	__u32 prev_tid = prev->pid, next_tid = next->pid;

	track_watchers(next, next_tgid);

	if (is_target(prev_tgid)) {
		struct slokit_cpu_acct *a = bpf_map_lookup_elem(&cpu_acct, &prev_tid);
		if (a) {
			if (a->on_cpu) {
				a->total_ns += now - a->last_in_ns;
				a->on_cpu = 0;
			}
		} else {
			/* Running since before the monitor attached: start at 0. */
			struct slokit_cpu_acct fresh = { .tgid = prev_tgid };
			if (bpf_map_update_elem(&cpu_acct, &prev_tid, &fresh, BPF_NOEXIST))
				count(SLOKIT_CNT_ACCT_FULL);
		}
	}
	if (is_target(next_tgid)) {
		struct slokit_cpu_acct *a = bpf_map_lookup_elem(&cpu_acct, &next_tid);
		if (a) {
			a->last_in_ns = now;
			a->on_cpu = 1;
		} else {
			struct slokit_cpu_acct fresh = {
				.last_in_ns = now, .on_cpu = 1, .tgid = next_tgid,
			};
			if (bpf_map_update_elem(&cpu_acct, &next_tid, &fresh, BPF_NOEXIST))
				count(SLOKIT_CNT_ACCT_FULL);
		}
	}
	return 0;
}
