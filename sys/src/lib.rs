//! slokit-sys: the one OS layer every slokit crate uses — CPU lists and
//! thread affinity ([`cpu`]), epoll/eventfd/timerfd ([`poll`]),
//! `sched_setattr(2)` and thread ids ([`sched`]), the monotonic and
//! thread-CPU clocks ([`clock`]), `/proc/PID/stat` lines ([`procfs`]), and
//! the CPU health check every measuring command runs first ([`canary`]). It plays the part `scx_utils` plays for
//! sched-ext/scx, which keeps `Cpumask` and `read_cpulist` in one place for
//! every scheduler: each wrapper exists once here, and the host, the
//! profiler, the agent and the CLI call it instead of keeping a copy.
//!
//! Written by hand on `libc` rather than on `nix` or `rustix`: these are
//! thin syscall wrappers (a few lines each, a `cpu_set_t`, a `repr(C)`
//! `sched_attr`), some of them called between fork and exec, where what
//! they allocate and call must stay visible.

pub mod canary;
pub mod clock;
pub mod cpu;
pub mod poll;
pub mod procfs;
pub mod sched;
