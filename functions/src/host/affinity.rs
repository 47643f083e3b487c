//! CPU lists and thread pinning for the host: `--cpus 1-3,5` parsing, the
//! set of CPUs this process may use, and `sched_setaffinity(2)` on the
//! calling thread. Workers go on the function CPUs; the acceptor and the
//! poller go on the others, so a `SCHED_FIFO` policy on the workers cannot
//! starve them (DESIGN.md, "The host's own threads stay off the function
//! CPUs").

use std::collections::BTreeSet;
use std::io;

use super::HostError;

/// Parses a CPU list in the kernel's `cpuset` syntax (`1`, `0-3`, `1-3,5`)
/// into sorted, distinct CPU numbers.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, HostError> {
    let bad = |why: String| {
        HostError::Config(format!(
            "CPU list `{list}`: {why} (write it like `1` or `1-3,5`)"
        ))
    };
    let mut cpus = BTreeSet::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad("empty entry".into()));
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("`{s}` is not a CPU number")))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(bad(format!("range `{part}` runs backwards")));
                }
                cpus.extend(lo..=hi);
            }
            None => {
                cpus.insert(parse(part)?);
            }
        }
    }
    if let Some(&max) = cpus.last() {
        if max >= libc::CPU_SETSIZE as usize {
            return Err(bad(format!("CPU {max} is beyond the kernel's limit")));
        }
    }
    Ok(cpus.into_iter().collect())
}

/// CPUs the given thread (0 = the calling thread) may run on.
pub fn thread_affinity(tid: u32) -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc = unsafe {
        libc::sched_getaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE and `set` is initialised.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel thread id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Formats CPU numbers back into the compact list syntax (`1-3,5`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges_and_mixtures() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpu_list("1-3,5").unwrap(), vec![1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("5, 1-2,2").unwrap(), vec![1, 2, 5]);
    }

    #[test]
    fn rejects_garbage_with_the_syntax_in_the_message() {
        for bad in ["", "a", "1-", "3-1", "1,,2", "99999"] {
            let e = parse_cpu_list(bad).unwrap_err().to_string();
            assert!(e.contains("1-3,5"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_back_compactly() {
        assert_eq!(format_cpu_list(&[1, 2, 3, 5]), "1-3,5");
        assert_eq!(format_cpu_list(&[0]), "0");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn pinning_round_trips_through_getaffinity() {
        let allowed = thread_affinity(0).unwrap();
        let cpu = *allowed.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(&[cpu]).unwrap();
            assert_eq!(thread_affinity(gettid()).unwrap(), vec![cpu]);
        })
        .join()
        .unwrap();
    }
}
