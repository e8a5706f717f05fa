//! Layer recipes: how a shared cache carries a `COPY` from the build
//! context without its files.
//!
//! Every runner that builds a Dockerfile has its build context, and a
//! `COPY` step's key already proves the files it copies are the same
//! (`sources_digest`: names, modes, owners, content). What the key leaves
//! out is what the layer adds around the content: tar headers with the
//! exporter's mtimes, PAX records, padding. A recipe is exactly that: the
//! layer's bytes with each copied regular file's content replaced by the
//! context path to read it from. Another runner writes the layer again
//! from its own context, byte for byte, and the store checks it against
//! the layer's digest (the `diff_id`); any difference (a recipe that lies,
//! a context file that changed) fails that check, and the step runs.
//!
//! So a cache export compresses and uploads kilobytes of headers instead
//! of the context's bytes, and an import reads local files instead of
//! downloading them; the image is the exporter's, mtimes included.
//!
//! Format (zstd-compressed): [`MAGIC`], then segments, each a tag byte:
//! `R` (u64 little-endian length, the bytes), `F` (u64 size, u32 path
//! length, the context-relative path: `size` bytes of that file), and `E`
//! at the end.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;

use kiln_rootfs::Root;
use kiln_store::{Digest, Store};
use nix::fcntl::OFlag;

use crate::ops::CopyOp;

/// The media type of a recipe blob.
pub const RECIPE_TYPE: &str = "application/vnd.kiln.layer-recipe.v1+zstd";
/// The key, in a cache record's layer descriptor, of the recipe's
/// descriptor.
pub const RECIPE_KEY: &str = "kiln.recipe";
/// The first bytes of a decompressed recipe.
const MAGIC: &[u8] = b"kiln-layer-recipe-v1\n";
/// The largest decompressed recipe read: headers and padding only.
const MAX_RECIPE: u64 = 256 << 20;
/// The largest PAX or GNU long-name extension read while making one.
const MAX_EXTENSION: u64 = 1 << 20;

/// Where a `COPY` puts its files and where it reads them: (the prefix of
/// their names in the layer, the source directory in the context), for
/// the one form a recipe covers: one directory of the build context,
/// copied without `--parents`. `None` for every other form (its layer is
/// exported as it is).
pub fn mapping(op: &CopyOp) -> Option<(String, String)> {
    if op.add
        || op.from_stage
        || op.parents
        || op.link
        || !op.urls.is_empty()
        || !op.git.is_empty()
        || !op.inline.is_empty()
    {
        return None;
    }
    let [source] = op.sources.as_slice() else {
        return None;
    };
    if source.contains(['*', '?', '[', '\\']) {
        return None;
    }
    let mut parts = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    let source = parts.join("/");
    let mut dest = Vec::new();
    for part in op.dest.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => dest.push(part),
        }
    }
    let prefix = if dest.is_empty() {
        String::new()
    } else {
        format!("{}/", dest.join("/"))
    };
    Some((prefix, source))
}

/// The recipe of the stored layer `layer` (an uncompressed tar kiln
/// packed), whose regular files under `prefix` came from `source` in the
/// context: compressed, ready to be a blob. `None` when no file maps (a
/// recipe would only repeat the layer).
///
/// # Errors
///
/// The layer cannot be read or is not a tar kiln reads.
pub fn make(
    store: &Store,
    layer: &Digest,
    (prefix, source): (&str, &str),
) -> Result<Option<Vec<u8>>, String> {
    let path = store.blobs().path(layer);
    let file = File::open(&path).map_err(|e| format!("opening layer {layer}: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("reading layer {layer}: {e}"))?
        .len();
    let read = |at: u64, n: u64| -> Result<Vec<u8>, String> {
        let n = usize::try_from(n).map_err(|_| format!("layer {layer}: a length past memory"))?;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| format!("reading layer {layer} at {at}: {e}"))?;
        Ok(buf)
    };
    let mut out = Vec::from(MAGIC);
    let mut raw_start = 0u64;
    let mut pos = 0u64;
    let mut files = 0usize;
    let mut long_name: Option<Vec<u8>> = None;
    while pos + 512 <= len {
        let header = read(pos, 512)?;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let size = header_size(&header)
            .ok_or_else(|| format!("layer {layer}: a tar header at {pos} has a bad size"))?;
        let data = pos + 512;
        let next = data
            .checked_add(size.div_ceil(512) * 512)
            .ok_or_else(|| format!("layer {layer}: a size past the end"))?;
        let kind = header.get(156).copied().unwrap_or(0);
        match kind {
            b'x' | b'L' => {
                if size > MAX_EXTENSION {
                    return Err(format!(
                        "layer {layer}: an extension header of {size} bytes"
                    ));
                }
                let bytes = read(data, size)?;
                long_name = if kind == b'x' {
                    pax_path(&bytes)
                } else {
                    Some(bytes.split(|b| *b == 0).next().unwrap_or_default().to_vec())
                };
            }
            b'g' => {}
            b'0' | 0 | b'7' if size > 0 => {
                let name = long_name.take().unwrap_or_else(|| ustar_name(&header));
                let name = String::from_utf8_lossy(&name);
                let name = name.trim_start_matches("./").trim_start_matches('/');
                if let Some(rel) = name.strip_prefix(prefix) {
                    let from = match (source.is_empty(), rel.is_empty()) {
                        (_, true) => None,
                        (true, false) => Some(rel.to_owned()),
                        (false, false) => Some(format!("{source}/{rel}")),
                    };
                    if let Some(from) = from {
                        push_raw(&mut out, &read(raw_start, data - raw_start)?);
                        out.push(b'F');
                        out.extend_from_slice(&size.to_le_bytes());
                        let from = from.as_bytes();
                        let n = u32::try_from(from.len())
                            .map_err(|_| format!("layer {layer}: a name too long"))?;
                        out.extend_from_slice(&n.to_le_bytes());
                        out.extend_from_slice(from);
                        raw_start = data + size;
                        files += 1;
                    }
                }
            }
            _ => long_name = None,
        }
        pos = next;
    }
    if files == 0 {
        return Ok(None);
    }
    push_raw(&mut out, &read(raw_start, len - raw_start)?);
    out.push(b'E');
    zstd::bulk::compress(&out, 3)
        .map(Some)
        .map_err(|e| format!("compressing the recipe of layer {layer}: {e}"))
}

fn push_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    out.push(b'R');
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A tar header's size field: octal, or GNU base-256.
fn header_size(header: &[u8]) -> Option<u64> {
    let field = header.get(124..136)?;
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(field.first()? & 0x7f);
        for b in field.get(1..)? {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The name of a ustar header (prefix and name joined).
fn ustar_name(header: &[u8]) -> Vec<u8> {
    let cut = |r: std::ops::Range<usize>| -> Vec<u8> {
        header
            .get(r)
            .unwrap_or_default()
            .iter()
            .copied()
            .take_while(|b| *b != 0)
            .collect()
    };
    let name = cut(0..100);
    let prefix = if header.get(257..262) == Some(b"ustar") {
        cut(345..500)
    } else {
        Vec::new()
    };
    if prefix.is_empty() {
        name
    } else {
        [prefix.as_slice(), b"/", name.as_slice()].concat()
    }
}

/// The `path` record of PAX extension data, if any.
fn pax_path(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut path = None;
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(data.get(..space)?).ok()?.parse().ok()?;
        let record = data.get(space + 1..len)?;
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(value.strip_suffix(b"\n").unwrap_or(value).to_vec());
        }
        data = data.get(len..)?;
    }
    path
}

/// Writes the layer `expected` (digest, size) into the store from the
/// compressed `recipe` and the files of `context`, checked on the way: a
/// layer whose bytes differ is never stored.
///
/// # Errors
///
/// The recipe is malformed, a file it names cannot be read in the
/// context or is shorter than it says, or the result is not the layer.
pub fn remake(
    store: &Store,
    recipe: &[u8],
    context: &Root,
    (digest, size): (&Digest, u64),
) -> Result<(), String> {
    let mut plain = Vec::new();
    zstd::Decoder::new(recipe)
        .and_then(|d| d.take(MAX_RECIPE + 1).read_to_end(&mut plain))
        .map_err(|e| format!("the recipe of layer {digest}: {e}"))?;
    if plain.len() as u64 > MAX_RECIPE {
        return Err(format!(
            "the recipe of layer {digest} is larger than {MAX_RECIPE} bytes"
        ));
    }
    let segments = plain
        .strip_prefix(MAGIC)
        .ok_or_else(|| format!("the recipe of layer {digest} is not a kiln layer recipe"))?;
    let reader = Remake {
        segments,
        context,
        raw: &[],
        file: None,
    };
    store
        .blobs()
        .write(
            reader,
            Some(kiln_store::blobs::Expected {
                digest,
                size: Some(size),
            }),
            &format!("layer {digest} remade from the build context"),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Reads a recipe's layer: its raw segments and its context files in
/// turn.
struct Remake<'a> {
    segments: &'a [u8],
    context: &'a Root,
    /// What is left of the raw segment being read.
    raw: &'a [u8],
    /// The context file being read: (its path, the reader, bytes left).
    file: Option<(String, io::Take<File>, u64)>,
}

impl<'a> Remake<'a> {
    fn malformed() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "a malformed recipe")
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let segments: &'a [u8] = self.segments;
        let (head, rest) = segments.split_at_checked(n).ok_or_else(Self::malformed)?;
        self.segments = rest;
        Ok(head)
    }

    fn u64(&mut self) -> io::Result<u64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| Self::malformed())?;
        Ok(u64::from_le_bytes(bytes))
    }
}

impl Read for Remake<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.raw.is_empty() {
                let n = self.raw.len().min(buf.len());
                let (head, rest) = self.raw.split_at(n);
                buf.get_mut(..n)
                    .ok_or_else(Self::malformed)?
                    .copy_from_slice(head);
                self.raw = rest;
                return Ok(n);
            }
            if let Some((path, file, left)) = &mut self.file {
                if *left == 0 {
                    self.file = None;
                    continue;
                }
                let n = file.read(buf)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("build context file {path} is shorter than the cached layer's"),
                    ));
                }
                *left -= n as u64;
                return Ok(n);
            }
            let tag = *self.take(1)?.first().ok_or_else(Self::malformed)?;
            match tag {
                b'R' => {
                    let len = usize::try_from(self.u64()?).map_err(|_| Self::malformed())?;
                    self.raw = self.take(len)?;
                }
                b'F' => {
                    let size = self.u64()?;
                    let n: [u8; 4] = self.take(4)?.try_into().map_err(|_| Self::malformed())?;
                    let n =
                        usize::try_from(u32::from_le_bytes(n)).map_err(|_| Self::malformed())?;
                    let path =
                        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Self::malformed())?;
                    // Non-blocking: a recipe naming a FIFO or a device of
                    // the context must fail, not wait for a writer.
                    let fd = self
                        .context
                        .open_at(
                            &path,
                            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
                        )
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("build context file {path}: {e}"))
                        })?;
                    let file = File::from(fd);
                    if !file.metadata()?.file_type().is_file() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("build context file {path} is not a regular file"),
                        ));
                    }
                    self.file = Some((path, file.take(size), size));
                }
                b'E' => return Ok(0),
                _ => return Err(Self::malformed()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CopyOp, MAGIC, header_size, make, mapping, pax_path, remake};

    fn copy(sources: &[&str], dest: &str) -> CopyOp {
        CopyOp {
            parent: None,
            add: false,
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            dest: dest.to_owned(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: Vec::new(),
            unpack: None,
            checksum: None,
            from_stage: false,
            inline: Vec::new(),
            urls: Vec::new(),
            git: Vec::new(),
            sources_digest: None,
        }
    }

    #[test]
    fn only_a_copy_of_one_context_directory_has_a_mapping() {
        let m = |op: &CopyOp| mapping(op);
        assert_eq!(
            m(&copy(&["."], "/src/./")),
            Some(("src/".to_owned(), String::new()))
        );
        assert_eq!(
            m(&copy(&["./app/"], "/")),
            Some((String::new(), "app".to_owned()))
        );
        assert_eq!(m(&copy(&["a", "b"], "/x/")), None);
        assert_eq!(m(&copy(&["*.txt"], "/x/")), None);
        assert_eq!(m(&copy(&["../up"], "/x/")), None);
        assert_eq!(m(&copy(&["a"], "/x/../y")), None);
        let mut from = copy(&["a"], "/x/");
        from.from_stage = true;
        assert_eq!(m(&from), None);
        let mut add = copy(&["a"], "/x/");
        add.add = true;
        assert_eq!(m(&add), None);
    }

    #[test]
    fn tar_fields_are_read_as_tar_writes_them() {
        let mut header = [0u8; 512];
        header[124..136].copy_from_slice(b"00000001750\0");
        assert_eq!(header_size(&header), Some(1000));
        // GNU base-256: the high bit set, big-endian after it.
        header[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(header_size(&header), Some(65536));
        header[124..136].copy_from_slice(b"0000000z750\0");
        assert_eq!(header_size(&header), None);
        assert_eq!(
            pax_path(b"20 path=a/long/name\n10 uid=42\n"),
            Some(b"a/long/name".to_vec())
        );
        assert_eq!(pax_path(b"99 path=short\n"), None);
    }

    /// A layer kiln packs, made into a recipe and remade from a context
    /// with the same files: the same bytes; from one where a file is
    /// shorter or different: refused, nothing stored.
    #[test]
    fn a_recipe_remakes_its_layer_from_the_same_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = kiln_store::Store::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        let layer_root = dir.path().join("layer");
        std::fs::create_dir_all(context.join("app/sub")).unwrap();
        std::fs::create_dir_all(layer_root.join("srv/app/sub")).unwrap();
        for (name, content) in [("a.txt", "a".repeat(3000)), ("sub/b.txt", "b".repeat(700))] {
            std::fs::write(context.join("app").join(name), &content).unwrap();
            std::fs::write(layer_root.join("srv/app").join(name), &content).unwrap();
        }
        std::fs::write(layer_root.join("srv/app/empty"), "").unwrap();
        let mut tar = Vec::new();
        kiln_store::layer::pack_directory(
            &layer_root,
            &mut tar,
            &kiln_store::layer::PackOptions::default(),
        )
        .unwrap();
        let layer = store.blobs().write_bytes(&tar).unwrap();
        let recipe = make(&store, &layer, ("srv/app/", "app")).unwrap().unwrap();
        let plain = zstd::decode_all(recipe.as_slice()).unwrap();
        assert!(plain.starts_with(MAGIC));
        assert!(plain.len() < tar.len(), "the files' bytes are left out");

        // Into another store, from the context.
        let other = kiln_store::Store::open(&dir.path().join("other")).unwrap();
        let root = kiln_rootfs::Root::open(&context).unwrap();
        let expected = (&layer, tar.len() as u64);
        remake(&other, &recipe, &root, expected).unwrap();
        assert_eq!(std::fs::read(other.blobs().path(&layer)).unwrap(), tar);

        let third = kiln_store::Store::open(&dir.path().join("third")).unwrap();
        std::fs::write(context.join("app/sub/b.txt"), "b".repeat(10)).unwrap();
        let error = remake(&third, &recipe, &root, expected).unwrap_err();
        assert!(
            error.contains("build context file app/sub/b.txt is shorter than the cached layer's"),
            "{error}"
        );
        std::fs::write(context.join("app/sub/b.txt"), "c".repeat(700)).unwrap();
        let error = remake(&third, &recipe, &root, expected).unwrap_err();
        assert!(error.contains("layer "), "{error}");
        assert!(!third.blobs().contains(&layer));
        // A recipe that is not one.
        let error = remake(&third, b"not zstd", &root, expected).unwrap_err();
        assert!(error.starts_with("the recipe of layer sha256:"), "{error}");
    }

    /// A recipe naming a FIFO of the context fails at once (it would
    /// otherwise wait for a writer), and one naming a path out of the
    /// context reads inside it.
    #[test]
    fn a_recipe_reads_only_regular_files_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = kiln_store::Store::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        nix::unistd::mkfifo(
            &context.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(dir.path().join("outside"), "host file").unwrap();
        let root = kiln_rootfs::Root::open(&context).unwrap();
        let recipe = |path: &str| {
            let mut plain = MAGIC.to_vec();
            plain.push(b'F');
            plain.extend_from_slice(&9u64.to_le_bytes());
            plain.extend_from_slice(&u32::try_from(path.len()).unwrap().to_le_bytes());
            plain.extend_from_slice(path.as_bytes());
            plain.push(b'E');
            zstd::bulk::compress(&plain, 3).unwrap()
        };
        let digest = kiln_store::digest::digest_bytes(b"host file");
        let error = remake(&store, &recipe("fifo"), &root, (&digest, 9)).unwrap_err();
        assert!(
            error.contains("build context file fifo is not a regular file"),
            "{error}"
        );
        let error = remake(&store, &recipe("../outside"), &root, (&digest, 9)).unwrap_err();
        assert!(error.contains("build context file ../outside"), "{error}");
        assert!(!store.blobs().contains(&digest));
    }
}
