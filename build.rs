//! Compiles the XDP program (src/io/afxdp/xwan.bpf.c, with the TC fast path of
//! offload.bpf.h) to BPF bytecode in OUT_DIR,
//! where src/io/afxdp embeds it with `include_bytes!`; and records the git
//! revision for `xwan --version` (XWAN_GIT_REV, "unknown" outside a checkout).
//!
//! Needs clang with the BPF target and the kernel UAPI and libbpf headers
//! (Debian: clang, linux-libc-dev, libbpf-dev). `CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/io/afxdp/xwan.bpf.c";
/// The in-kernel fast path, included by SOURCE.
const OFFLOAD: &str = "src/io/afxdp/offload.bpf.h";

fn main() {
    git_revision();
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={OFFLOAD}");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("xwan.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    let mut command = Command::new(&clang);
    command.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"]);
    // With `-target bpf` clang does not search the host's multiarch include
    // directory, where Debian keeps <asm/types.h>.
    if let Some(multiarch) = multiarch_dir() {
        command.arg(format!("-I/usr/include/{multiarch}"));
    }
    command.arg("-c").arg(SOURCE).arg("-o").arg(&object);

    let status = match command.status() {
        Ok(status) => status,
        Err(err) => panic!(
            "cannot run `{clang}` to compile the XDP program {SOURCE}: {err}; \
             install clang (Debian: apt-get install clang libbpf-dev) or set CLANG"
        ),
    };
    if !status.success() {
        panic!(
            "`{clang}` failed to compile the XDP program {SOURCE} ({status}); \
             it needs the kernel and libbpf headers (Debian: apt-get install libbpf-dev linux-libc-dev)"
        );
    }
}

fn git_revision() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|rev| rev.trim().to_string())
        .filter(|rev| !rev.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=XWAN_GIT_REV={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

fn multiarch_dir() -> Option<&'static str> {
    match env::var("CARGO_CFG_TARGET_ARCH").ok()?.as_str() {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "x86" => Some("i386-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        "riscv64" => Some("riscv64-linux-gnu"),
        _ => None,
    }
}
