//! CPU lists and affinity: the kernel's cpulist syntax (`1-3,5`), strict for
//! flags and lenient for the kernel command line, the online CPUs, and
//! `sched_{get,set}affinity(2)` on the calling thread or any task, with an
//! [`AffinityGuard`] that puts the calling thread's mask back on drop.

use std::collections::BTreeSet;
use std::io;

/// What is wrong with a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListProblem {
    #[error("empty entry")]
    EmptyEntry,
    #[error("`{0}` is not a CPU number")]
    NotANumber(String),
    #[error("range `{0}` runs backwards")]
    Backwards(String),
    #[error("CPU {0} is beyond the kernel's limit")]
    BeyondLimit(usize),
}

/// A CPU list [`parse_cpu_list`] refused: the list, the bad part, and the
/// syntax to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CPU list `{list}`: {problem} (write it like `1` or `1-3,5`)")]
pub struct CpuListError {
    pub list: String,
    pub problem: CpuListProblem,
}

const SETSIZE: usize = libc::CPU_SETSIZE as usize;

/// Parses a CPU list in the kernel's cpulist syntax (`1`, `0-3`, `1-3,5`;
/// blanks around entries allowed) into sorted, distinct CPU numbers. Any
/// bad entry is an error naming it.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, CpuListError> {
    let bad = |problem| CpuListError {
        list: list.to_string(),
        problem,
    };
    let mut cpus = BTreeSet::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad(CpuListProblem::EmptyEntry));
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad(CpuListProblem::NotANumber(s.to_string())))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(bad(CpuListProblem::Backwards(part.to_string())));
                }
                if hi >= SETSIZE {
                    return Err(bad(CpuListProblem::BeyondLimit(hi)));
                }
                cpus.extend(lo..=hi);
            }
            None => {
                cpus.insert(parse(part)?);
            }
        }
    }
    if let Some(&max) = cpus.last() {
        if max >= SETSIZE {
            return Err(bad(CpuListProblem::BeyondLimit(max)));
        }
    }
    Ok(cpus.into_iter().collect())
}

/// Parses a CPU list from the kernel command line (`isolcpus=`,
/// `nohz_full=`), where flags such as `domain,managed_irq` share the list:
/// entries that are not CPUs or ranges are skipped, never an error.
pub fn parse_cpu_list_lenient(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                out.extend(a..=b);
            }
        } else if let Ok(c) = part.parse::<usize>() {
            out.push(c);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Formats sorted CPU numbers back into the compact list syntax (`1-3,5`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            out.push_str(&cpus[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", cpus[i], cpus[j]));
        }
        i = j + 1;
    }
    out
}

/// CPUs online on this machine (`/sys/devices/system/cpu/online`; if that
/// cannot be read, `0..available_parallelism`).
pub fn online_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()).ok())
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        })
}

/// Affinity mask of task `pid` (a thread id; 0 = the calling thread).
pub fn get_affinity(pid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..SETSIZE)
        // SAFETY: `c` < CPU_SETSIZE and `set` is initialised.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Sets the affinity mask of task `pid` (a thread id; 0 = the calling
/// thread); a CPU beyond `CPU_SETSIZE` is `EINVAL`. Allocates nothing and
/// calls only `sched_setaffinity(2)`, so it may run between fork and exec.
pub fn set_affinity(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= SETSIZE {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `c` < CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPUs the calling thread may run on.
pub fn current_affinity() -> io::Result<Vec<usize>> {
    get_affinity(0)
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    set_affinity(0, cpus)
}

/// Restores the calling thread's affinity mask when dropped.
#[derive(Debug)]
pub struct AffinityGuard {
    tid: u32,
    original: Vec<usize>,
}

impl AffinityGuard {
    /// Moves the calling thread onto `cpus`, remembering its current mask.
    pub fn pin_current(cpus: &[usize]) -> io::Result<Self> {
        let original = current_affinity()?;
        pin_current_thread(cpus)?;
        Ok(Self {
            tid: crate::sched::gettid(),
            original,
        })
    }

    /// The mask the thread had before, which drop restores.
    pub fn original(&self) -> &[usize] {
        &self.original
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        debug_assert_eq!(
            self.tid,
            crate::sched::gettid(),
            "an AffinityGuard must drop on its own thread"
        );
        let _ = pin_current_thread(&self.original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::gettid;

    #[test]
    fn parses_single_ranges_and_mixtures() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpu_list("1-3,5").unwrap(), vec![1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("5, 1-2,2").unwrap(), vec![1, 2, 5]);
    }

    #[test]
    fn rejects_garbage_with_the_syntax_in_the_message() {
        for bad in ["", "a", "1-", "3-1", "1,,2", "99999", "0-99999"] {
            let e = parse_cpu_list(bad).unwrap_err().to_string();
            assert!(e.contains("1-3,5"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = parse_cpu_list("1,x-2").unwrap_err();
        assert_eq!(e.problem, CpuListProblem::NotANumber("x".into()));
        assert!(e.to_string().contains("`x` is not a CPU number"), "{e}");
        let e = parse_cpu_list("3-1").unwrap_err();
        assert_eq!(e.problem, CpuListProblem::Backwards("3-1".into()));
        assert_eq!(
            parse_cpu_list("1,,2").unwrap_err().problem,
            CpuListProblem::EmptyEntry
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1-3,6,2").unwrap(), [1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0").unwrap(), [0]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(!online_cpus().is_empty());
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list_lenient("1-3,5"), vec![1, 2, 3, 5]);
        assert_eq!(parse_cpu_list_lenient("domain,managed_irq,2-3"), vec![2, 3]);
        assert_eq!(parse_cpu_list_lenient(""), Vec::<usize>::new());
    }

    #[test]
    fn formats_back_compactly() {
        assert_eq!(format_cpu_list(&[1, 2, 3, 5]), "1-3,5");
        assert_eq!(format_cpu_list(&[0]), "0");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn pinning_round_trips_through_getaffinity() {
        let allowed = current_affinity().unwrap();
        let cpu = *allowed.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(&[cpu]).unwrap();
            assert_eq!(get_affinity(gettid() as libc::pid_t).unwrap(), vec![cpu]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn affinity_round_trips_on_this_thread() {
        // on a thread of its own, so the test harness's thread keeps its mask
        std::thread::spawn(|| {
            let before = get_affinity(0).unwrap();
            assert!(!before.is_empty());
            let cpu = *before.last().unwrap();
            {
                let _g = AffinityGuard::pin_current(&[cpu]).unwrap();
                assert_eq!(get_affinity(0).unwrap(), vec![cpu]);
            }
            assert_eq!(get_affinity(0).unwrap(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cpus_beyond_the_set_are_einval() {
        let e = set_affinity(0, &[SETSIZE]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
