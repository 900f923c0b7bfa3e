//! Sysctls, read from `/proc/sys` (network sysctls answer for the calling thread's
//! network namespace).

use crate::config::PortRange;

use super::SystemError;

fn path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// The value of a sysctl (`net.ipv4.ip_forward`), trimmed.
pub fn read_sysctl(name: &str) -> Result<String, SystemError> {
    std::fs::read_to_string(path(name))
        .map(|value| value.trim().to_owned())
        .map_err(|err| SystemError::io(format!("sysctl {name}"), err))
}

/// Sets a sysctl.
pub fn write_sysctl(name: &str, value: &str) -> Result<(), SystemError> {
    std::fs::write(path(name), value).map_err(|err| SystemError::io(format!("sysctl {name}"), err))
}

/// `net.ipv4.ip_local_port_range`: the ports the kernel picks for its own
/// connections when a socket does not bind one.
pub fn local_port_range() -> Result<PortRange, SystemError> {
    const NAME: &str = "net.ipv4.ip_local_port_range";
    let value = read_sysctl(NAME)?;
    parse_port_range(&value).ok_or(SystemError::Parse {
        what: format!("sysctl {NAME}"),
        content: value,
    })
}

fn parse_port_range(value: &str) -> Option<PortRange> {
    let mut parts = value.split_whitespace().map(str::parse::<u16>);
    let lo = parts.next()?.ok()?;
    let hi = parts.next()?.ok()?;
    (parts.next().is_none() && lo <= hi).then_some(PortRange { lo, hi })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;

    #[test]
    fn parses_port_ranges() {
        assert_eq!(
            parse_port_range("32768\t60999"),
            Some(PortRange {
                lo: 32768,
                hi: 60999
            })
        );
        assert_eq!(
            parse_port_range("61000 61000"),
            Some(PortRange {
                lo: 61000,
                hi: 61000
            })
        );
        for bad in ["", "1", "2 1", "1 2 3", "a b", "1 70000"] {
            assert_eq!(parse_port_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_the_calling_threads_namespace() {
        let ns = TestNetns::new("sysctl");
        let out = ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_local_port_range=40000 40999",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let range = ns.run(local_port_range).expect("readable");
        assert_eq!(
            range,
            PortRange {
                lo: 40000,
                hi: 40999
            }
        );
        assert_eq!(
            ns.run(|| read_sysctl("net.ipv4.ip_forward"))
                .expect("readable"),
            "0"
        );
        let err = read_sysctl("net.ipv4.no_such_sysctl").expect_err("absent");
        assert!(
            err.to_string()
                .starts_with("sysctl net.ipv4.no_such_sysctl: "),
            "{err}"
        );
    }
}
