//! Builds the eBPF monitor: generates `vmlinux.h` from the running kernel's
//! BTF with bpftool (into OUT_DIR, never committed), then compiles
//! `src/bpf/monitor.bpf.c` with clang and generates its Rust skeleton with
//! libbpf-cargo's `SkeletonBuilder` (the sched-ext/scx layout).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SRC: &str = "src/bpf/monitor.bpf.c";
const BTF: &str = "/sys/kernel/btf/vmlinux";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf/intf.h");
    println!("cargo:rerun-if-env-changed=SLOKIT_VMLINUX_H");

    let vmlinux = vmlinux_header(&out);
    let include_dir = vmlinux
        .parent()
        .expect("vmlinux.h has a parent")
        .to_path_buf();

    let skel = out.join("monitor.skel.rs");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("powerpc64") => "powerpc",
        Ok("s390x") => "s390",
        Ok(other) => panic!("slokit-sched: eBPF target for architecture {other} is not known"),
        Err(_) => "x86",
    };
    libbpf_cargo::SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            format!("-I{}", include_dir.display()),
            "-Isrc/bpf".to_string(),
            format!("-D__TARGET_ARCH_{arch}"),
            "-O2".to_string(),
            "-g".to_string(),
        ])
        .build_and_generate(&skel)
        .unwrap_or_else(|e| {
            panic!(
                "slokit-sched: cannot build the eBPF monitor {SRC}: {e:#}\n\
                 (is clang installed? run `cargo xtask setup`)"
            )
        });
}

/// `vmlinux.h` for the BPF program: `$SLOKIT_VMLINUX_H` when set (a
/// published header, for build machines without BTF), else generated with
/// `bpftool btf dump file /sys/kernel/btf/vmlinux format c`.
fn vmlinux_header(out: &Path) -> PathBuf {
    if let Some(p) = env::var_os("SLOKIT_VMLINUX_H") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "slokit-sched: SLOKIT_VMLINUX_H={} is not a file",
            p.display()
        );
        let dir = out.join("vmlinux-env");
        std::fs::create_dir_all(&dir).expect("create OUT_DIR/vmlinux-env");
        let dst = dir.join("vmlinux.h");
        std::fs::copy(&p, &dst).expect("copy SLOKIT_VMLINUX_H into OUT_DIR");
        return dst;
    }
    let dst = out.join("vmlinux.h");
    if dst.is_file() {
        return dst;
    }
    if !Path::new(BTF).exists() {
        panic!(
            "slokit-sched: {BTF} is missing, so vmlinux.h cannot be generated. \
             Build on a kernel with CONFIG_DEBUG_INFO_BTF=y, or set SLOKIT_VMLINUX_H \
             to a published vmlinux.h for your kernel."
        );
    }
    let output = Command::new("bpftool")
        .args(["btf", "dump", "file", BTF, "format", "c"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "slokit-sched: cannot run bpftool ({e}) to generate vmlinux.h: \
                 run `cargo xtask setup` (installs bpftool, clang, libelf-dev, zlib1g-dev)"
            )
        });
    if !output.status.success() {
        panic!(
            "slokit-sched: `bpftool btf dump file {BTF} format c` failed: {}\n\
             (run `cargo xtask setup`)",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tmp = out.join("vmlinux.h.tmp");
    std::fs::write(&tmp, &output.stdout).expect("write vmlinux.h into OUT_DIR");
    std::fs::rename(&tmp, &dst).expect("rename vmlinux.h into place");
    dst
}
