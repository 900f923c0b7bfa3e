//! libnftables (the library behind the `nft` command), loaded at run time
//! from `libnftables.so.1`, which the nftables package installs. The API is
//! safe: [`Nftables`] owns its context, and every call into the library is in
//! this file.
//!
//! xwan talks to nftables in-process rather than through `nft` so that the
//! netlink socket its table is created on lives exactly as long as xwan: a
//! table with the `owner` flag (Linux 5.12, nftables 0.9.9) belongs to that
//! socket, only it may change the table, and the kernel deletes the table when
//! the socket closes, however the process ends. One context keeps one socket
//! for its life (nftables 0.9.9 removed the socket re-opening that would have
//! broken this).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;

use libloading::Library;

/// The library's file name (its soname).
pub const LIBRARY: &str = "libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// One libnftables context, and with it one netlink socket.
pub struct Nftables {
    ctx: NonNull<c_void>,
    free: CtxFree,
    error_buffer: CtxBuffer,
    run: RunCmd,
    /// Keeps the functions above loaded; dropped last.
    _library: Library,
}

// SAFETY: a context is used by one thread at a time (`&mut self` for every
// call; the filter keeps it behind a mutex), which is all libnftables asks:
// it has no thread-local state.
unsafe impl Send for Nftables {}

impl Nftables {
    /// Loads the library and opens a context (and its socket) in the calling
    /// thread's network namespace.
    pub fn open() -> Result<Nftables, String> {
        let load = |e: libloading::Error| {
            format!("loading {LIBRARY} (is the nftables package installed?): {e}")
        };
        // SAFETY: loading libnftables runs its initialisers, which only set up
        // the library's own tables; it is the library `nft` itself uses.
        let library = unsafe { Library::new(LIBRARY) }.map_err(load)?;
        // SAFETY: each symbol has the C signature of nftables/libnftables.h
        // (stable since nftables 0.9.0); the pointers are copied out and used
        // only while `library`, kept in the struct, is loaded.
        let (new, free, buffer_output, buffer_error, error_buffer, run) = unsafe {
            (
                *library.get::<CtxNew>(b"nft_ctx_new\0").map_err(load)?,
                *library.get::<CtxFree>(b"nft_ctx_free\0").map_err(load)?,
                *library
                    .get::<CtxInt>(b"nft_ctx_buffer_output\0")
                    .map_err(load)?,
                *library
                    .get::<CtxInt>(b"nft_ctx_buffer_error\0")
                    .map_err(load)?,
                *library
                    .get::<CtxBuffer>(b"nft_ctx_get_error_buffer\0")
                    .map_err(load)?,
                *library
                    .get::<RunCmd>(b"nft_run_cmd_from_buffer\0")
                    .map_err(load)?,
            )
        };
        // SAFETY: NFT_CTX_DEFAULT (0) is the documented flag value.
        let ctx = NonNull::new(unsafe { new(0) })
            .ok_or_else(|| "libnftables could not create a context".to_string())?;
        let nft = Nftables {
            ctx,
            free,
            error_buffer,
            run,
            _library: library,
        };
        // SAFETY: `ctx` is a live context; buffering keeps listings and errors
        // off xwan's stdout and stderr and lets `run` return the errors.
        let buffered =
            unsafe { buffer_output(nft.ctx.as_ptr()) == 0 && buffer_error(nft.ctx.as_ptr()) == 0 };
        if buffered {
            Ok(nft)
        } else {
            Err("libnftables could not buffer its output".into())
        }
    }

    /// Runs an nft script (one transaction); the error messages nft would
    /// print when it fails.
    pub fn run(&mut self, script: &str) -> Result<(), String> {
        let script =
            CString::new(script).map_err(|_| "an nft script with a NUL byte".to_string())?;
        // SAFETY: `ctx` is live and used by this thread alone (`&mut self`);
        // `script` is a NUL-terminated string that outlives the call.
        let status = unsafe { (self.run)(self.ctx.as_ptr(), script.as_ptr()) };
        if status == 0 {
            return Ok(());
        }
        // SAFETY: with error buffering on, the context returns a NUL-terminated
        // string it owns until the next call, copied out at once.
        let message = unsafe {
            let text = (self.error_buffer)(self.ctx.as_ptr());
            if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().trim().to_owned()
            }
        };
        Err(if message.is_empty() {
            format!("nft failed with status {status}")
        } else {
            message
        })
    }
}

impl Drop for Nftables {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from nft_ctx_new and is freed once, here; this
        // closes its socket (and so deletes a table it owns).
        unsafe { (self.free)(self.ctx.as_ptr()) }
    }
}
