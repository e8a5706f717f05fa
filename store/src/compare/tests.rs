//! The comparison logic on layers written here as tars: no root, no store.

use kiln_reference::Digest;

use super::{
    Field, FileTree, LayerChange, PathChange, Status, diff_trees, display_path, layer_report,
};
use crate::digest::digest_bytes;
use crate::layer::changes::{FileType, read_layer_changes};

/// Tar entries of one test layer.
#[derive(Default)]
struct Layer {
    builder: Option<tar::Builder<Vec<u8>>>,
    mtime: u64,
}

impl Layer {
    fn new() -> Self {
        Self {
            builder: Some(tar::Builder::new(Vec::new())),
            mtime: 1_700_000_000,
        }
    }

    /// Later entries carry this mtime.
    fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32, owner: (u64, u64)) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(self.mtime);
        header.set_size(0);
        header
    }

    fn append(mut self, mut header: tar::Header, path: &str, data: &[u8]) -> Self {
        header.set_size(data.len() as u64);
        if let Some(builder) = self.builder.as_mut() {
            builder.append_data(&mut header, path, data).unwrap();
        }
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_as(path, data, 0o644, (0, 0))
    }

    fn file_as(self, path: &str, data: &[u8], mode: u32, owner: (u64, u64)) -> Self {
        let header = self.header(tar::EntryType::Regular, mode, owner);
        self.append(header, path, data)
    }

    fn dir(self, path: &str) -> Self {
        let header = self.header(tar::EntryType::Directory, 0o755, (0, 0));
        self.append(header, path, b"")
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut header = self.header(kind, 0o777, (0, 0));
        if let Some(builder) = self.builder.as_mut() {
            builder.append_link(&mut header, path, target).unwrap();
        }
        self
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, path, target)
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, path, target)
    }

    fn changes(mut self) -> Vec<LayerChange> {
        let bytes = self.builder.take().unwrap().into_inner().unwrap();
        read_layer_changes(bytes.as_slice()).unwrap()
    }
}

/// The file system of `layers` applied in order.
fn tree(layers: Vec<Layer>) -> FileTree {
    let mut tree = FileTree::new();
    for (i, layer) in layers.into_iter().enumerate() {
        tree.apply(i, &layer.changes()).unwrap();
    }
    tree
}

/// `A /path`, `D /path`, `C /path type,mode`: a compact form to assert on.
fn lines(changes: &[PathChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let status = match c.status {
                Status::Added => "A",
                Status::Removed => "D",
                Status::Changed => "C",
            };
            let fields: Vec<&str> = c.fields.iter().map(|f| f.name()).collect();
            format!("{status} {} {}", display_path(&c.path), fields.join(","))
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn paths(tree: &FileTree) -> Vec<String> {
    tree.files().map(|(p, _)| display_path(p)).collect()
}

#[test]
fn reads_entries_whiteouts_and_opaque_markers() {
    let changes = Layer::new()
        .dir("./etc/")
        .file("./etc/a", b"abc")
        .file("etc/.wh.b", b"")
        .file("etc/d/.wh..wh..opq", b"")
        .symlink("l", "/etc/a")
        .hardlink("h", "etc/a")
        .changes();
    assert_eq!(changes.len(), 6);
    let LayerChange::Write { path, node } = &changes[1] else {
        panic!("{changes:?}");
    };
    assert_eq!(path, b"etc/a");
    assert_eq!(node.file_type, FileType::File);
    assert_eq!(node.size, 3);
    assert_eq!(node.digest, Some(digest_bytes(b"abc")));
    assert_eq!(
        changes[2],
        LayerChange::Remove {
            path: b"etc/b".to_vec()
        }
    );
    assert_eq!(
        changes[3],
        LayerChange::Opaque {
            dir: b"etc/d".to_vec()
        }
    );
    assert_eq!(
        changes[5],
        LayerChange::Hardlink {
            path: b"h".to_vec(),
            target: b"etc/a".to_vec()
        }
    );
}

#[test]
fn whiteouts_remove_files_and_directories_with_their_content() {
    let before = tree(vec![
        Layer::new()
            .file("keep", b"k")
            .file("gone", b"g")
            .dir("d")
            .file("d/x", b"x")
            .dir("d/sub")
            .file("d/sub/y", b"y"),
    ]);
    let after = tree(vec![
        Layer::new()
            .file("keep", b"k")
            .file("gone", b"g")
            .dir("d")
            .file("d/x", b"x")
            .dir("d/sub")
            .file("d/sub/y", b"y"),
        Layer::new().file(".wh.gone", b"").file("d/.wh.sub", b""),
    ]);
    assert_eq!(
        lines(&diff_trees(&before, &after)),
        ["D /d/sub", "D /d/sub/y", "D /gone"]
    );
}

#[test]
fn a_whiteout_never_hides_what_its_own_layer_writes() {
    let after = tree(vec![
        Layer::new().file("a", b"old").file("b", b"old"),
        // Before and after the entry it names: either way the new file stays.
        Layer::new()
            .file(".wh.a", b"")
            .file("a", b"new")
            .file("b", b"new")
            .file(".wh.b", b""),
    ]);
    assert_eq!(after.get(b"a").unwrap().digest, Some(digest_bytes(b"new")));
    assert_eq!(after.get(b"b").unwrap().digest, Some(digest_bytes(b"new")));
}

#[test]
fn opaque_directories_hide_the_lower_content_but_not_their_own() {
    let lower = Layer::new()
        .dir("d")
        .file("d/a", b"a")
        .dir("d/sub")
        .file("d/sub/b", b"b")
        .file("d/sub/c", b"c")
        .file("other", b"o");
    let after = tree(vec![
        lower,
        // The marker listed after the layer's own entries: they stay.
        Layer::new()
            .dir("d")
            .file("d/new", b"n")
            .file("d/sub/c", b"c2")
            .file("d/.wh..wh..opq", b""),
    ]);
    assert_eq!(
        paths(&after),
        ["/d", "/d/new", "/d/sub", "/d/sub/c", "/other"]
    );
}

#[test]
fn an_opaque_root_hides_every_lower_path() {
    let after = tree(vec![
        Layer::new().file("a", b"a").dir("d").file("d/b", b"b"),
        Layer::new().file(".wh..wh..opq", b"").file("c", b"c"),
    ]);
    assert_eq!(paths(&after), ["/c"]);
}

#[test]
fn hardlinks_share_content_and_keep_it_alive() {
    let layers = || {
        vec![
            Layer::new()
                .file_as("bin/tool", &[7u8; 1000], 0o755, (0, 0))
                .hardlink("bin/alias", "bin/tool"),
            Layer::new().file("bin/.wh.tool", b""),
        ]
    };
    let after = tree(layers());
    let alias = after.get(b"bin/alias").unwrap();
    assert_eq!(alias.file_type, FileType::File);
    assert_eq!(alias.size, 1000);
    assert_eq!(alias.mode, 0o755);
    assert_eq!(alias.digest, Some(digest_bytes(&[7u8; 1000])));
    // The content keeps a name: nothing is wasted, and it counts once.
    assert_eq!(after.content_size(), 1000);
    let report = layer_report(&after, &[(id(0), 3), (id(1), 1)], 5);
    assert_eq!(report.wasted, 0);
    assert_eq!(report.total, 1000);

    let mut layers = layers();
    layers.push(Layer::new().file("bin/.wh.alias", b""));
    let after = tree(layers);
    let report = layer_report(&after, &[(id(0), 3), (id(1), 1), (id(2), 1)], 5);
    assert_eq!(report.wasted, 1000);
    assert_eq!(report.layers[0].wasted, 1000);
}

#[test]
fn a_hardlink_to_a_missing_file_names_the_entry() {
    let mut tree = FileTree::new();
    let error = tree
        .apply(0, &Layer::new().hardlink("h", "nothing").changes())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tar entry h: hardlink target nothing does not exist"
    );
}

#[test]
fn a_file_becoming_a_directory_and_back_is_a_type_change() {
    let before = tree(vec![
        Layer::new()
            .file("x", b"file")
            .dir("y")
            .file("y/inner", b"i"),
    ]);
    let after = tree(vec![
        Layer::new()
            .file("x", b"file")
            .dir("y")
            .file("y/inner", b"i"),
        Layer::new()
            .dir("x")
            .file("x/new", b"n")
            .file("y", b"now a file"),
    ]);
    assert_eq!(
        lines(&diff_trees(&before, &after)),
        ["C /x type,mode", "A /x/new", "C /y type,mode", "D /y/inner"]
    );
    // The replaced file's and the removed directory's bytes are wasted.
    let report = layer_report(&after, &[(id(0), 3), (id(1), 3)], 5);
    assert_eq!(report.layers[0].added, 5);
    assert_eq!(report.layers[0].wasted, 5);
}

#[test]
fn changes_of_mode_owner_link_and_content_are_named() {
    let before = tree(vec![
        Layer::new()
            .file_as("bin/x", b"same", 0o644, (0, 0))
            .file_as("f", b"same", 0o644, (0, 0))
            .file("conf", b"twelve bytes")
            .file("same-size", b"aaaa")
            .symlink("l", "/a"),
    ]);
    let after = tree(vec![
        Layer::new()
            .file_as("bin/x", b"same", 0o755, (0, 0))
            .file_as("f", b"same", 0o644, (1000, 1000))
            .file("conf", b"now it is forty bytes long, quite longer")
            .file("same-size", b"bbbb")
            .symlink("l", "/b"),
    ]);
    assert_eq!(
        lines(&diff_trees(&before, &after)),
        [
            "C /bin/x mode",
            "C /conf content",
            "C /f owner",
            "C /l link",
            "C /same-size content"
        ]
    );
}

#[test]
fn directories_differing_only_in_mtime_are_not_reported() {
    let before = tree(vec![Layer::new().mtime(1).dir("d").file("d/f", b"f")]);
    let after = tree(vec![
        Layer::new().mtime(2).dir("d").file("d/f", b"f"),
        Layer::new().mtime(3).dir("d"),
    ]);
    assert!(diff_trees(&before, &after).is_empty());
}

#[test]
fn parents_are_resolved_through_symlinks_inside_the_root() {
    let after = tree(vec![
        Layer::new()
            .dir("run")
            .dir("var")
            .symlink("var/run", "../../../run")
            .symlink("abs", "/run"),
        Layer::new().file("var/run/pid", b"1").file("abs/x", b"2"),
    ]);
    assert_eq!(
        paths(&after),
        ["/abs", "/run", "/run/pid", "/run/x", "/var", "/var/run"]
    );
    assert_eq!(after.get(b"var/run").unwrap().file_type, FileType::Symlink);
}

#[test]
fn a_symlink_loop_is_an_error_not_a_hang() {
    let mut tree = FileTree::new();
    tree.apply(
        0,
        &Layer::new().symlink("a", "b").symlink("b", "a").changes(),
    )
    .unwrap();
    let error = tree
        .apply(1, &Layer::new().file("a/x", b"").changes())
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("too many levels of symbolic links"),
        "{error}"
    );
}

#[test]
fn missing_parents_are_created_as_the_unpacker_creates_them() {
    let after = tree(vec![Layer::new().file("a/b/c", b"c")]);
    let a = after.get(b"a").unwrap();
    assert_eq!((a.file_type, a.mode, a.uid), (FileType::Dir, 0o755, 0));
    assert_eq!(paths(&after), ["/a", "/a/b", "/a/b/c"]);
}

#[test]
fn wasted_bytes_are_those_a_later_layer_deletes_or_overwrites() {
    let ten_mb = vec![0u8; 10 * 1024 * 1024];
    let after = tree(vec![
        Layer::new().file("keep", &[1u8; 100]),
        Layer::new().file("big", &ten_mb).file("small", b"12345"),
        Layer::new().file(".wh.big", b"").file("small", b"123"),
    ]);
    let report = layer_report(&after, &[(id(0), 1), (id(1), 2), (id(2), 2)], 1);
    assert_eq!(report.total, 100 + 10_485_760 + 5 + 3);
    assert_eq!(report.wasted, 10_485_760 + 5);
    assert_eq!(report.layers[1].added, 10_485_765);
    assert_eq!(report.layers[1].wasted, 10_485_765);
    assert_eq!(report.layers[2].wasted, 0);
    assert_eq!(report.layers[1].largest.len(), 1);
    assert_eq!(report.layers[1].largest[0].path, b"big");
    assert!(report.layers[1].largest[0].wasted);
    let expected = 1.0 - 10_485_765.0 / 10_485_868.0;
    assert!((report.efficiency() - expected).abs() < 1e-12);
}

#[test]
fn hostile_names_cannot_forge_output_lines() {
    assert_eq!(display_path(b"etc/passwd"), "/etc/passwd");
    assert_eq!(display_path(b"a\nC /etc/shadow"), "/a\\nC /etc/shadow");
    assert_eq!(display_path(b"back\\slash \xff"), "/back\\\\slash \\xff");
    assert_eq!(display_path("caf\u{e9}".as_bytes()), "/caf\u{e9}");
}

#[test]
fn fields_have_stable_names() {
    let names: Vec<&str> = [
        Field::Type,
        Field::Content,
        Field::Mode,
        Field::Owner,
        Field::Link,
        Field::Device,
        Field::Xattrs,
    ]
    .iter()
    .map(|f| f.name())
    .collect();
    assert_eq!(
        names,
        [
            "type", "content", "mode", "owner", "link", "device", "xattrs"
        ]
    );
}

fn id(n: u8) -> Digest {
    digest_bytes(&[n])
}
