//! Counting under Valgrind: the parent side. A built-in function is counted
//! by re-executing the slokit binary under callgrind with the hidden
//! `__count-instructions` subcommand (see [`super::region`]); a command is
//! counted as whole processes under cachegrind (`--cache-sim=no`, the
//! cheapest tool that counts instructions). Each child runs pinned to the
//! measurement CPU in `SCHED_OTHER`, with `LD_BIND_NOW=1` so that lazy
//! symbol binding does not add the dynamic linker's work to the first call,
//! its output in files of a private temporary directory, and is killed by
//! its pid on a timeout or Ctrl-C.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::region::REGION_SYMBOL;
use super::{CountScope, CountSettings, CountSource, InstructionSection};
use crate::error::ProfileError;
use crate::isolation::set_affinity;

/// The hidden subcommand that runs the counted region.
pub const COUNT_SUBCOMMAND: &str = "__count-instructions";

/// `valgrind --version` (e.g. `valgrind-3.19.0`), or an error saying how
/// to install it.
pub fn valgrind_version() -> Result<String, ProfileError> {
    let out = Command::new("valgrind")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            ProfileError::Count(format!(
                "cannot run `valgrind` ({e}) and no hardware instruction counter opens on this machine: \
                 install Valgrind (`apt-get install valgrind`, or `cargo xtask setup`)"
            ))
        })?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || v.is_empty() {
        return Err(ProfileError::Count(format!(
            "`valgrind --version` failed ({}); reinstall Valgrind",
            out.status
        )));
    }
    Ok(v)
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, ProfileError> {
        use std::sync::atomic::AtomicU64;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "slokit-count-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|source| ProfileError::Io {
            action: "create the temporary directory",
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` to completion from a thread pinned to `cpu` (the child
/// inherits the affinity, and this process's `SCHED_OTHER`), with stdout
/// and stderr in `dir`. Returns the stderr file's path on success.
fn run_pinned(
    mut cmd: Command,
    what: &str,
    dir: &Path,
    cpu: usize,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<PathBuf, ProfileError> {
    let out_path = dir.join("child.stdout");
    let err_path = dir.join("child.stderr");
    let file = |p: &Path| {
        File::create(p).map_err(|source| ProfileError::Io {
            action: "create",
            path: p.to_path_buf(),
            source,
        })
    };
    cmd.stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?);
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<std::process::ExitStatus, ProfileError> {
            set_affinity(0, &[cpu]).map_err(|e| {
                ProfileError::System(format!("cannot pin the counting thread to CPU {cpu}: {e}"))
            })?;
            let mut child = cmd
                .spawn()
                .map_err(|e| ProfileError::Count(format!("cannot start {what}: {e}")))?;
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return Ok(status),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ProfileError::Count(format!("cannot wait for {what}: {e}")))
                    }
                }
                let interrupted = stop.load(Ordering::Relaxed);
                if interrupted || start.elapsed() > timeout {
                    // Our own child, by its pid.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(if interrupted {
                        ProfileError::Interrupted
                    } else {
                        ProfileError::Count(format!(
                            "{what} did not finish within {timeout:?} (--timeout) and was killed"
                        ))
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .join()
        .unwrap_or_else(|_| Err(ProfileError::System("the counting thread panicked".into())))
    });
    let status = result?;
    if !status.success() {
        return Err(ProfileError::Count(format!(
            "{what} exited with {status}; its last output:\n{}",
            tail(&err_path, 12)
        )));
    }
    Ok(err_path)
}

/// The instruction total of a callgrind or cachegrind output file: its
/// `summary:` line (the first event, `Ir`, is the instruction count).
pub fn parse_summary(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn read_summary(path: &Path) -> Result<u64, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        action: "read Valgrind's output",
        path: path.to_path_buf(),
        source,
    })?;
    parse_summary(&text).ok_or_else(|| {
        ProfileError::Count(format!(
            "`{}` has no `summary:` line; is this Valgrind's output?",
            path.display()
        ))
    })
}

fn valgrind_command(tool_args: &[String], settings: &CountSettings) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.arg("-q").args(tool_args).env("LD_BIND_NOW", "1");
    for (k, v) in &settings.child_env {
        cmd.env(k, v);
    }
    cmd
}

/// Counts a built-in function: one callgrind run of the slokit binary whose
/// counted region runs `settings.invocations` times after
/// `settings.warmup` uncounted invocations; one dump per invocation.
pub fn count_builtin(
    name: &str,
    params: &Value,
    cpu: usize,
    settings: &CountSettings,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<InstructionSection, ProfileError> {
    let version = valgrind_version()?;
    let exe = match &settings.exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| {
            ProfileError::System(format!("cannot find this slokit binary to re-execute: {e}"))
        })?,
    };
    let dir = TempDir::new()?;
    let out = dir.0.join("callgrind.out");
    let args = vec![
        "--tool=callgrind".to_string(),
        "--collect-atstart=no".into(),
        format!("--toggle-collect={REGION_SYMBOL}"),
        format!("--dump-after={REGION_SYMBOL}"),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let mut cmd = valgrind_command(&args, settings);
    cmd.arg(&exe)
        .arg(COUNT_SUBCOMMAND)
        .arg(name)
        .arg("--params")
        .arg(if params.is_null() {
            "{}".to_string()
        } else {
            params.to_string()
        })
        .arg("--warmup")
        .arg(settings.warmup.to_string())
        .arg("--invocations")
        .arg(settings.invocations.to_string());
    let what = format!(
        "`valgrind --tool=callgrind {} {COUNT_SUBCOMMAND} {name}`",
        exe.display()
    );
    let stderr = run_pinned(cmd, &what, &dir.0, cpu, timeout, stop)?;
    let mut counts = Vec::new();
    for k in 1..=settings.invocations {
        let dump = PathBuf::from(format!("{}.{k}", out.display()));
        if !dump.exists() {
            return Err(ProfileError::Count(format!(
                "callgrind wrote no dump for invocation {k} of {} (is `{REGION_SYMBOL}` in `{}`? \
                 a stripped binary cannot be counted); its last output:\n{}",
                settings.invocations,
                exe.display(),
                tail(&stderr, 12)
            )));
        }
        counts.push(read_summary(&dump)?);
    }
    InstructionSection::from_counts(
        &counts,
        settings.warmup,
        CountSource::Valgrind,
        format!("{version} callgrind"),
        CountScope::Invocation,
    )
}

/// Counts a command as whole processes: `settings.invocations` runs under
/// cachegrind, children followed (`--trace-children=yes`, so `sh -c` and
/// what it starts are counted), each run's total summed over its processes.
/// `PYTHONHASHSEED=0` unless the environment sets it (see the body).
pub fn count_command(
    argv: &[String],
    cpu: usize,
    settings: &CountSettings,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<InstructionSection, ProfileError> {
    let version = valgrind_version()?;
    let mut counts = Vec::new();
    for k in 0..settings.invocations {
        let dir = TempDir::new()?;
        let args = vec![
            "--tool=cachegrind".to_string(),
            "--cache-sim=no".into(),
            "--branch-sim=no".into(),
            "--trace-children=yes".into(),
            format!("--cachegrind-out-file={}/cachegrind.%p", dir.0.display()),
        ];
        let mut cmd = valgrind_command(&args, settings);
        if std::env::var_os("PYTHONHASHSEED").is_none()
            && !settings
                .child_env
                .iter()
                .any(|(k, _)| k == "PYTHONHASHSEED")
        {
            // Python salts its string hashes per process; the salt moves a
            // script's count by ~0.2 %. A fixed one makes runs comparable.
            cmd.env("PYTHONHASHSEED", "0");
        }
        cmd.args(argv);
        let what = format!(
            "`valgrind --tool=cachegrind {}` (run {})",
            argv.join(" "),
            k + 1
        );
        run_pinned(cmd, &what, &dir.0, cpu, timeout, stop)?;
        let mut total = 0u64;
        let entries = std::fs::read_dir(&dir.0).map_err(|source| ProfileError::Io {
            action: "list",
            path: dir.0.clone(),
            source,
        })?;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("cachegrind.") {
                total += read_summary(&e.path())?;
            }
        }
        counts.push(total);
    }
    InstructionSection::from_counts(
        &counts,
        0,
        CountSource::Valgrind,
        format!("{version} cachegrind"),
        CountScope::Process,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_parse_from_callgrind_and_cachegrind_output() {
        let callgrind = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
                         events: Ir\nsummary: 137699\ntotals: 137699\n";
        assert_eq!(parse_summary(callgrind), Some(137_699));
        let cachegrind = "desc: I1 cache:\ncmd: true\nevents: Ir\nfl=x\n1 2\nsummary: 226922\n";
        assert_eq!(parse_summary(cachegrind), Some(226_922));
        assert_eq!(parse_summary("events: Ir\n"), None);
        assert_eq!(parse_summary("summary: lots\n"), None);
    }

    #[test]
    fn a_command_counts_as_whole_processes_under_valgrind() {
        if valgrind_version().is_err() {
            eprintln!("SKIPPED: valgrind is not installed (cargo xtask setup installs it)");
            return;
        }
        let s = CountSettings {
            invocations: 2,
            ..CountSettings::default()
        };
        let c = count_command(
            &["true".to_string()],
            0,
            &s,
            Duration::from_secs(60),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(c.scope, CountScope::Process);
        assert!(c.per_invocation > 10_000, "{c:?}");
        assert!(c.tool.contains("cachegrind"), "{c:?}");
        let e = count_command(
            &["false".to_string()],
            0,
            &s,
            Duration::from_secs(60),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
    }
}
