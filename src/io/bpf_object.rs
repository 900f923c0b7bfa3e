//! xwan's BPF object (src/io/afxdp/xwan.bpf.c with offload.bpf.h, compiled by
//! build.rs) and how its programs are loaded: only the ones asked for, each
//! of which can be tried alone, so one program the kernel refuses never takes
//! the others down, and the verifier's log goes to debug level, summed up in
//! one line for the error.
//!
//! The programs:
//! - `xwan_xdp`, the XDP classifier of `--io xdp` (and the fast path's XDP hook);
//! - `xwan_offload`, the fast path at TC ingress;
//! - `xwan_offload_tap`, the socket filter that keeps the fast path's frames
//!   from the workers' AF_PACKET sockets (`--io packet`).
//!
//! They share the object's maps, so the ones a data path needs are loaded
//! together, in one object.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use libbpf_rs::{Object, ObjectBuilder, PrintLevel};

/// The compiled object; libbpf parses it as ELF, so keep it 8-byte aligned.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/xwan.bpf.o")));

/// One program of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BpfProgram {
    /// `xwan_xdp`: the XDP classifier.
    Xdp,
    /// `xwan_offload`: the fast path at TC ingress.
    Offload,
    /// `xwan_offload_tap`: the workers' socket filter (`--io packet`).
    Tap,
}

impl BpfProgram {
    /// Its name in the object, as the kernel reports it.
    pub fn name(self) -> &'static str {
        match self {
            BpfProgram::Xdp => "xwan_xdp",
            BpfProgram::Offload => "xwan_offload",
            BpfProgram::Tap => "xwan_offload_tap",
        }
    }
}

/// Why the kernel would not load a program or the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// EPERM or EACCES: not permitted (capabilities, seccomp, a security
    /// module), which says nothing of what the kernel supports.
    pub not_permitted: bool,
    /// One line: the verifier's last meaningful line, or libbpf's error.
    pub summary: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

/// What libbpf printed during the load in progress (loads are serialized).
static LOG: Mutex<String> = Mutex::new(String::new());
/// Held for the whole of one load, so the log is that load's.
static LOADING: Mutex<()> = Mutex::new(());
/// Set while a load runs: only its messages are kept for its summary.
static CAPTURING: AtomicBool = AtomicBool::new(false);
/// The most of one load's messages kept (a verifier log can be megabytes;
/// its end, which says why, is what the summary reads).
const LOG_KEPT: usize = 64 * 1024;

/// libbpf's messages, verifier logs included: logged at debug level, never
/// printed to stderr, and the load's own kept for its summary.
fn capture(_level: PrintLevel, message: String) {
    tracing::debug!(target: "xwan::bpf", "{}", message.trim_end());
    if CAPTURING.load(Ordering::SeqCst) {
        let mut log = crate::io::sync::lock(&LOG);
        log.push_str(&message);
        if log.len() > 2 * LOG_KEPT {
            let cut = log.len() - LOG_KEPT;
            let cut = (cut..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            log.drain(..cut);
        }
    }
}

/// The maps only the XDP program uses that some kernels cannot create (an
/// XSKMAP needs AF_XDP sockets, CONFIG_XDP_SOCKETS): not created without it.
const XDP_ONLY_MAPS: [&str; 1] = ["xsks"];

/// Opens the object and loads the programs in `wanted` (every map is
/// created either way).
pub fn load(wanted: &[BpfProgram]) -> Result<Object, Refusal> {
    static PRINT: Once = Once::new();
    PRINT.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Debug, capture)));
    });
    let _loading = crate::io::sync::lock(&LOADING);
    crate::io::sync::lock(&LOG).clear();
    CAPTURING.store(true, Ordering::SeqCst);
    let xdp = wanted.contains(&BpfProgram::Xdp);
    let result = ObjectBuilder::default()
        .open_memory(&OBJECT.0)
        .and_then(|mut open| {
            for mut program in open.progs_mut() {
                let name = program.name().to_string_lossy().into_owned();
                program.set_autoload(wanted.iter().any(|w| w.name() == name));
            }
            for mut map in open.maps_mut() {
                let name = map.name().to_string_lossy().into_owned();
                if !xdp && XDP_ONLY_MAPS.contains(&name.as_str()) {
                    map.set_autocreate(false)?;
                }
                // TC looks for the XDP program's mark only when it runs.
                if name.ends_with(".rodata.xwan") {
                    if let Some(rodata) = map.initial_value_mut() {
                        set_xdp_marks(rodata, xdp);
                    }
                }
            }
            open.load()
        });
    CAPTURING.store(false, Ordering::SeqCst);
    let log = std::mem::take(&mut *crate::io::sync::lock(&LOG));
    result.map_err(|err| {
        let verifier = log.contains("-- BEGIN PROG LOAD LOG --");
        Refusal {
            // The verifier refuses with EACCES too: that is no permission
            // matter.
            not_permitted: !verifier
                && matches!(err.kind(), libbpf_rs::ErrorKind::PermissionDenied),
            summary: match verifier_summary(&log) {
                Some(line) => {
                    format!("{err}; verifier: {line} (the whole log at debug level: -vv)")
                }
                None => err.to_string(),
            },
        }
    })
}

/// The object's section `.rodata.xwan` holds one variable, `xdp_marks`
/// (offload.bpf.h): its one byte.
fn set_xdp_marks(rodata: &mut [u8], on: bool) {
    if let Some(flag) = rodata.first_mut() {
        *flag = u8::from(on);
    }
}

/// Whether the kernel loads `program` on its own (an object with only it).
pub fn try_load(program: BpfProgram) -> Result<(), Refusal> {
    load(&[program]).map(drop)
}

/// The line of a libbpf load log that says why the verifier refused the
/// program: the last one of the verifier's log before its closing
/// statistics ("processed N insns ...", "verification time ..."), with the
/// program's name; or libbpf's own last error line (before its closing
/// "failed to load object") when it printed no verifier log.
pub fn verifier_summary(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    let program = lines.iter().find_map(|l| {
        let rest = l.strip_prefix("libbpf: prog '")?;
        rest.split_once('\'').map(|(name, _)| name)
    });
    let end = lines
        .iter()
        .rposition(|l| l.contains("-- END PROG LOAD LOG --"));
    let reason = match end {
        Some(end) => lines[..end].iter().rev().find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.contains("-- BEGIN PROG LOAD LOG --")
        }),
        None => {
            let libbpf = || lines.iter().rev().filter(|l| l.starts_with("libbpf:"));
            libbpf()
                .find(|l| !l.contains("failed to load object"))
                .or_else(|| libbpf().next())
        }
    }?;
    Some(match program {
        Some(name) if !reason.contains(name) => format!("prog '{name}': {reason}"),
        _ => reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifiers_reason_is_lifted_out_of_its_log() {
        let log = "libbpf: prog 'xwan_xdp': BPF program load failed: Invalid argument\n\
                   libbpf: prog 'xwan_xdp': -- BEGIN PROG LOAD LOG --\n\
                   0: R1=ctx() R10=fp0\n\
                   ; int xwan_xdp(struct xdp_md *ctx)\n\
                   54: (85) call bpf_xdp_adjust_meta#54\n\
                   program of this type cannot use helper bpf_xdp_adjust_meta#54\n\
                   processed 120 insns (limit 1000000) max_states_per_insn 0 total_states 8\n\
                   -- END PROG LOAD LOG --\n\
                   libbpf: prog 'xwan_xdp': failed to load: -22\n\
                   libbpf: failed to load object 'xwan_bpf'\n";
        assert_eq!(
            verifier_summary(log).as_deref(),
            Some("prog 'xwan_xdp': program of this type cannot use helper bpf_xdp_adjust_meta#54")
        );
    }

    #[test]
    fn without_a_verifier_log_libbpfs_last_error_stands() {
        let log = "libbpf: map 'xsks': failed to create: Operation not supported(-95)\n\
                   libbpf: failed to load object 'xwan_bpf'\n";
        assert_eq!(
            verifier_summary(log).as_deref(),
            Some("libbpf: map 'xsks': failed to create: Operation not supported(-95)")
        );
        assert_eq!(verifier_summary(""), None);
    }

    /// Needs root (CAP_BPF): each program of the object loads alone on this
    /// kernel, and so do all three together.
    #[test]
    fn each_program_loads_alone_and_together() {
        let all = [BpfProgram::Xdp, BpfProgram::Offload, BpfProgram::Tap];
        for program in all {
            try_load(program).unwrap_or_else(|r| panic!("{}: {r}", program.name()));
        }
        load(&all).expect("all three");
    }
}
