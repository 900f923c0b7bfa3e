//! TAP devices: a virtual Ethernet interface whose "wire" is a file
//! descriptor. A frame written to the descriptor is received by the kernel
//! on the device, as if it had come in on a NIC. The device is not
//! persistent: it goes away when its descriptor closes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::check;
use super::link::IfreqSocket;

/// An open TAP device.
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates the TAP device `name` (frames without the packet-information
    /// header) and brings it up.
    pub fn create(name: &str) -> io::Result<Tap> {
        let mut req = IfreqSocket::request(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: req is a valid ifreq that outlives the call; TUNSETIFF reads
        // the name and flags and writes the device's name back inside it.
        check(unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETIFF,
                &mut req as *mut libc::ifreq,
            )
        })?;
        let name: String = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();
        IfreqSocket::open()?.set_up(&name)?;
        Ok(Tap { file, name })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands one Ethernet frame to the kernel, received on the device.
    pub fn inject(&self, frame: &[u8]) -> io::Result<()> {
        let written = (&self.file).write(frame)?;
        if written == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{written} of {} bytes written", frame.len()),
            ))
        }
    }
}
