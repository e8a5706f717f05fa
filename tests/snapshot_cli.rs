//! End-to-end tests of snapshots as root: layers applied on their parent
//! chain (`kiln load` and `kiln run` of crafted images), completeness,
//! `system check` and `system df`. They need root (chown, devices,
//! namespaces, mounts); CI runs them as root.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Entry, Kiln, layer, layer_of_dir, oci_archive};

/// A store and the layer of a busybox root file system.
fn busybox_layer() -> (Kiln, Vec<u8>) {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "snapshot tests need root (chown, mknod, namespaces); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    (kiln, layer_of_dir(&rootfs))
}

/// Loads an image of `layers` as `reference`.
fn load(kiln: &Kiln, reference: &str, layers: &[Vec<u8>]) {
    let file = kiln.path(&format!("{}.tar", reference.replace([':', '/'], "_")));
    fs::write(&file, oci_archive(reference, layers)).unwrap();
    kiln.ok(&["load", "-q", "-i", file.to_str().unwrap()]);
}

/// `kiln run --rm IMAGE sh -c SCRIPT`'s stdout.
fn sh(kiln: &Kiln, image: &str, script: &str) -> String {
    kiln.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The snapshots of `image` (made as needed), base first.
fn snapshots(kiln: &Kiln, image: &str) -> Vec<PathBuf> {
    common::image_snapshots(&kiln.root(), image)
}

#[test]
fn a_layer_lands_through_a_symlink_of_the_layers_below() {
    let (kiln, base) = busybox_layer();
    let links = layer(&[
        Entry::Dir("var/"),
        Entry::Symlink("var/run", "/run"),
        Entry::Dir("run/"),
    ]);
    let top = layer(&[Entry::File("var/run/x/f", b"through the link\n")]);
    load(&kiln, "links:1", &[base, links, top]);
    // As on a real file system (and in containerd's mounted applier): the
    // symlink stays and the file is where it points.
    assert_eq!(
        sh(
            &kiln,
            "links:1",
            "cat /run/x/f /var/run/x/f; test -L /var/run && echo still a link"
        ),
        "through the link\nthrough the link\nstill a link\n"
    );
    // A build from it sees the same, and a RUN on it writes through too.
    let dir = kiln.path("ctx");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM links:1\nRUN cat /run/x/f > /var/run/copy\n",
    )
    .unwrap();
    kiln.ok(&["build", "-q", "-t", "built:1", dir.to_str().unwrap()]);
    assert_eq!(
        sh(
            &kiln,
            "built:1",
            "cat /run/copy; test -L /var/run && echo link"
        ),
        "through the link\nlink\n"
    );
    assert_eq!(
        kiln.ok(&["system", "check"]),
        format!("store {} is consistent\n", kiln.root().display())
    );
}

#[test]
fn a_loaded_image_with_the_same_layer_twice() {
    let (kiln, base) = busybox_layer();
    let same = layer(&[Entry::Dir("sub/"), Entry::File("sub/f", b"same\n")]);
    let delete = layer(&[Entry::File(".wh.sub", b"")]);
    load(
        &kiln,
        "twice:1",
        &[base.clone(), same.clone(), same.clone()],
    );
    assert_eq!(sh(&kiln, "twice:1", "cat /sub/f"), "same\n");
    // The same layer again after one that deletes its files.
    load(&kiln, "again:1", &[base, same.clone(), delete, same]);
    assert_eq!(sh(&kiln, "again:1", "cat /sub/f"), "same\n");
    let chain = snapshots(&kiln, "again:1");
    assert_eq!(
        chain
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        4
    );
    // `system df` counts snapshots by chain: 3 for twice:1, 4 for again:1,
    // the first two shared.
    let df = kiln.ok(&["system", "df"]);
    let row = df.lines().find(|l| l.starts_with("Snapshots")).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[1..3], ["5", "5"], "{df}");
}

#[test]
fn system_check_finds_a_snapshot_lacking_a_file_and_run_makes_it_again() {
    let (kiln, base) = busybox_layer();
    let top = layer(&[
        Entry::Dir("app/"),
        Entry::File("app/a", b"a\n"),
        Entry::File("app/b", b"b\n"),
    ]);
    load(&kiln, "app:1", &[base, top]);
    let chain = snapshots(&kiln, "app:1");
    let damaged = chain[1].clone();
    let name = damaged
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    fs::remove_file(damaged.join("app/b")).unwrap();
    fs::write(damaged.join("app/a"), "A\n").unwrap();

    let output = kiln.run(&["system", "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "snapshot {name}: app/a: content differs\n\
             snapshot {name}: lacks app/b\n\
             snapshot {name}: differs from layer {} (moved aside; made again when next used)\n",
            kiln.ok(&["inspect", "-f", "{{index .RootFS.Layers 1}}", "app:1"])
                .trim()
        )
    );
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "error: 3 problem(s) found\n"
    );
    // The next run never sees the damaged files: the snapshot is made
    // again from the layer.
    assert_eq!(sh(&kiln, "app:1", "cat /app/a /app/b"), "a\nb\n");
    kiln.ok(&["system", "check"]);
}

#[test]
fn an_incomplete_or_old_snapshot_is_never_used() {
    let (kiln, base) = busybox_layer();
    let top = layer(&[Entry::File("f", b"complete\n")]);
    load(&kiln, "img:1", &[base, top]);
    let chain = snapshots(&kiln, "img:1");
    let dir = chain[1].parent().unwrap().to_owned();
    // No completion record (as if cut short, or from before records), and
    // a file missing.
    fs::remove_file(dir.join("snapshot.json")).unwrap();
    fs::remove_file(chain[1].join("f")).unwrap();
    assert_eq!(sh(&kiln, "img:1", "cat /f"), "complete\n");
    // The old layout: a layer's files right in snapshots/<hex>/.
    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("f"), "stale\n").unwrap();
    assert_eq!(sh(&kiln, "img:1", "cat /f"), "complete\n");
    assert!(dir.join("snapshot.json").exists());
    // `system check` reports one it finds, and moves it aside.
    fs::remove_file(dir.join("snapshot.json")).unwrap();
    let output = kiln.run(&["system", "check"]);
    assert_eq!(output.status.code(), Some(1));
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "snapshot {name}: has no completion record (moved aside; made again when next used)\n"
        )
    );
    assert!(!dir.exists());
    assert_eq!(sh(&kiln, "img:1", "cat /f"), "complete\n");
}

#[test]
fn a_loaded_layer_may_name_the_root() {
    let (kiln, base) = busybox_layer();
    // A file, then an empty-named regular entry and GNU tar's `./`: the
    // last two are skipped, as by containerd and Docker (kiln refused the
    // empty name, so the image loaded but could not run).
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_size(2);
    builder.append_data(&mut header, "f", &b"f\n"[..]).unwrap();
    for (name, kind) in [
        (&b""[..], tar::EntryType::Regular),
        (b"./", tar::EntryType::Directory),
    ] {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_mode(0o700);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(0);
        header.set_cksum();
        builder.append(&header, &b""[..]).unwrap();
    }
    let file = kiln.path("root.tar");
    let layers = [base, builder.into_inner().unwrap()];
    fs::write(&file, oci_archive("root:1", &layers)).unwrap();
    let output = kiln.run(&["load", "-i", file.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
    assert_eq!(sh(&kiln, "root:1", "cat /f; stat -c %a /"), "f\n755\n");
}
