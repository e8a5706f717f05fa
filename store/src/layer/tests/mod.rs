//! Layer tests. They need root (chown, mknod, trusted xattrs); without it
//! each reports the skip (kiln-testkit) and returns.

mod chain;
mod compression;
mod hostile;
mod pgzip;
mod rootless;
mod roundtrip;

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{UnpackOptions, UnpackStats, WhiteoutMode, unpack_layer};
use crate::layer::LayerError;

/// Whether the tests can do what root can; prints the skip notice otherwise.
pub(super) fn root_or_skip() -> bool {
    kiln_testkit::root("chown, mknod, trusted xattrs")
}

/// A temp dir holding `dest/` (empty) and a sibling `victim/` with files.
pub(super) struct Sandbox {
    pub _tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub victim: PathBuf,
    pub before: Vec<String>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let victim = tmp.path().join("victim");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("secret"), b"top secret").unwrap();
        fs::create_dir(victim.join("dir")).unwrap();
        fs::write(victim.join("dir/inner"), b"inner").unwrap();
        std::os::unix::fs::symlink("secret", victim.join("link")).unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        for p in ["secret", "dir/inner", "dir", ""] {
            filetime::set_file_times(victim.join(p), old, old).unwrap();
        }
        let before = snapshot(&victim);
        Sandbox {
            _tmp: tmp,
            dest,
            victim,
            before,
        }
    }

    /// Unpacks `tar` into `dest` and asserts the victim is unchanged.
    pub fn unpack(&self, tar: &[u8], mode: WhiteoutMode) -> Result<UnpackStats, LayerError> {
        let r = unpack_layer(tar, &self.dest, &UnpackOptions { whiteouts: mode });
        self.assert_victim_untouched();
        r
    }

    pub fn assert_victim_untouched(&self) {
        assert_eq!(snapshot(&self.victim), self.before, "victim changed");
    }

    /// Absolute path of the victim as bytes (for absolute names and targets).
    pub fn victim_abs(&self) -> Vec<u8> {
        self.victim.as_os_str().as_bytes().to_vec()
    }
}

/// One line per entry under `root` (including root): path, type, mode,
/// owner, mtime with nanoseconds, size, content or link target, xattrs.
pub(super) fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for ent in walkdir::WalkDir::new(root).sort_by_file_name() {
        let ent = ent.unwrap();
        let md = ent.path().symlink_metadata().unwrap();
        let rel = ent.path().strip_prefix(root).unwrap().display().to_string();
        let ft = md.file_type();
        let body = if ft.is_symlink() {
            format!("-> {}", fs::read_link(ent.path()).unwrap().display())
        } else if ft.is_file() {
            let mut s = String::new();
            fs::File::open(ent.path())
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            format!("= {s:?}")
        } else if ft.is_char_device() || ft.is_block_device() {
            format!(
                "dev {}:{}",
                nix::sys::stat::major(md.rdev()),
                nix::sys::stat::minor(md.rdev())
            )
        } else {
            String::new()
        };
        let mut xattrs: Vec<String> = xattr::list(ent.path())
            .unwrap()
            .map(|n| {
                let v = xattr::get(ent.path(), &n).unwrap().unwrap_or_default();
                format!("{}={}", n.to_string_lossy(), hex::encode(v))
            })
            .collect();
        xattrs.sort();
        out.push(format!(
            "{rel:?} {:o} {}:{} mtime={}.{} size={} {body} [{}]",
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec(),
            if ft.is_dir() { 0 } else { md.size() },
            xattrs.join(",")
        ));
    }
    out
}

/// A tar archive assembled from raw 512-byte headers, so names and fields
/// the `tar` crate would refuse to write can be tested.
#[derive(Default)]
pub(super) struct RawTar(pub Vec<u8>);

/// Entry type bytes.
pub(super) const REG: u8 = b'0';
pub(super) const LNK: u8 = b'1';
pub(super) const SYM: u8 = b'2';
pub(super) const CHR: u8 = b'3';
pub(super) const DIR: u8 = b'5';
pub(super) const FIFO: u8 = b'6';

impl RawTar {
    /// A ustar header with `name` and `link` copied verbatim (at most 100 bytes each).
    pub fn header(name: &[u8], typ: u8, size: u64, link: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(tar::EntryType::new(typ));
        h.set_mode(if typ == DIR { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_500_000_000);
        h.set_size(size);
        h.set_cksum();
        h
    }

    pub fn push(&mut self, h: &tar::Header, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.push(&Self::header(name, REG, data.len() as u64, b""), data)
    }

    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.push(&Self::header(name, DIR, 0, b""), b"")
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.push(&Self::header(name, SYM, 0, target), b"")
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.push(&Self::header(name, LNK, 0, target), b"")
    }

    /// A PAX `x` header with the given records, describing the next member.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(b"PaxHeader", b'x', data.len() as u64, b"");
        self.push(&h, &data)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// `(path, type char, ...)` listing of a tar's members as the `tar` crate reads them.
pub(super) fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = char::from(e.header().entry_type().as_byte());
            let link = e
                .link_name_bytes()
                .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
                .unwrap_or_default();
            format!("{t} {}{link}", String::from_utf8_lossy(&e.path_bytes()))
        })
        .collect()
}
