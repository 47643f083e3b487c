//! One reader of `/proc/PID/stat` and `/proc/PID/task/TID/stat` lines
//! (proc(5)). The comm may hold spaces and parentheses, so the fields are
//! counted after its *last* `)`; fields are numbered as proc(5) numbers
//! them (1 = pid, 2 = comm, 3 = state, …), so call sites read like the
//! manual.

/// Field numbers of proc(5) that slokit reads.
pub mod field {
    pub const STATE: usize = 3;
    pub const PPID: usize = 4;
    pub const PGRP: usize = 5;
    pub const FLAGS: usize = 9;
    pub const UTIME: usize = 14;
    pub const STIME: usize = 15;
    pub const CUTIME: usize = 16;
    pub const CSTIME: usize = 17;
    pub const PROCESSOR: usize = 39;
    pub const RT_PRIORITY: usize = 40;
    pub const POLICY: usize = 41;
}

/// `PF_KTHREAD` in the flags field: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// One parsed stat line, borrowing from the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat<'a> {
    /// Field 1: the pid (or tid, for a task's line).
    pub pid: u32,
    /// Field 2, without its parentheses.
    pub comm: &'a str,
    /// Fields 3.. in order.
    rest: Vec<&'a str>,
}

impl<'a> Stat<'a> {
    /// Parses a stat line; `None` when it is not one.
    pub fn parse(line: &'a str) -> Option<Self> {
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        Some(Stat {
            pid: line.get(..open)?.trim().parse().ok()?,
            comm: line.get(open + 1..close)?,
            rest: line.get(close + 1..)?.split_whitespace().collect(),
        })
    }

    /// Field `n` (3 or more) as text.
    pub fn field(&self, n: usize) -> Option<&'a str> {
        self.rest.get(n.checked_sub(field::STATE)?).copied()
    }

    /// Field `n` (3 or more) parsed as `T`.
    pub fn get<T: std::str::FromStr>(&self, n: usize) -> Option<T> {
        self.field(n)?.parse().ok()
    }

    /// Field 3: `R`, `S`, `D`, `Z`, … (empty when missing).
    pub fn state(&self) -> &'a str {
        self.field(field::STATE).unwrap_or("")
    }

    /// Whether the task is a kernel thread: `PF_KTHREAD`, or kthreadd (pid
    /// 2) or one of its children.
    pub fn is_kernel_thread(&self) -> bool {
        let flags: u64 = self.get(field::FLAGS).unwrap_or(0);
        flags & PF_KTHREAD != 0 || self.pid == 2 || self.get::<u32>(field::PPID) == Some(2)
    }

    /// utime + stime + cutime + cstime, clock ticks.
    pub fn cpu_ticks_with_children(&self) -> Option<u64> {
        [field::UTIME, field::STIME, field::CUTIME, field::CSTIME]
            .iter()
            .map(|&n| self.get::<u64>(n))
            .sum()
    }
}

/// The text of `/proc/PID/stat`.
pub fn read_process(pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
}

/// The text of `/proc/PID/task/TID/stat`.
pub fn read_task(pid: u32, tid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (gunicorn: w (1)) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                        70 30 5 2 20 0 1 0 100 1000 50 18446744073709551615 1 1 0 0 0 0 0 \
                        4096 0 0 0 0 17 1 50 1 0 0 0";

    #[test]
    fn fields_are_numbered_as_in_proc5_after_a_comm_with_parentheses() {
        let s = Stat::parse(LINE).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "gunicorn: w (1)");
        assert_eq!(s.state(), "S");
        assert_eq!(s.get::<u32>(field::PPID), Some(1));
        assert_eq!(s.get::<u32>(field::PGRP), Some(4242));
        assert_eq!(s.cpu_ticks_with_children(), Some(70 + 30 + 5 + 2));
        assert_eq!(s.get::<usize>(field::PROCESSOR), Some(1));
        assert_eq!(s.get::<u32>(field::RT_PRIORITY), Some(50));
        assert_eq!(s.get::<u32>(field::POLICY), Some(1));
        assert_eq!(s.field(2), None, "comm is not a numbered field here");
        assert_eq!(s.field(99), None);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn kernel_threads_and_garbage() {
        let kthread = "77 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 20 0 1 0";
        assert!(Stat::parse(kthread).unwrap().is_kernel_thread());
        assert_eq!(Stat::parse("garbage"), None);
        assert_eq!(Stat::parse("x (a) S"), None, "the pid must be a number");
    }

    #[test]
    fn this_thread_and_process_read_back() {
        // The calling thread is running; the process's line is its main
        // thread's, which may be waiting for the test threads.
        let (pid, tid) = (std::process::id(), crate::sched::gettid());
        let text = read_task(pid, tid).unwrap();
        let s = Stat::parse(&text).unwrap();
        assert_eq!((s.pid, s.state()), (tid, "R"));
        let text = read_process(pid).unwrap();
        let s = Stat::parse(&text).unwrap();
        assert_eq!(s.pid, pid);
        assert!(!s.is_kernel_thread());
    }
}
