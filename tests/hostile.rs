//! Hostile input against every way in, as root: layers (load, import,
//! unpack), ADD, COPY and every kind of `RUN --mount`, with symlinks and
//! hardlinks whose targets are absolute, relative, dangling or swapped
//! between stages. A canary directory outside every root must never be
//! read, written, chmodded or emptied.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use common::build::{build, busybox, context, sh};
use common::{Kiln, tar_end, tar_entry, tar_entry_mode};

/// What no image and no output may ever contain.
const MARK: &str = "CANARY-7f3a9c";

/// A host directory outside every root, with a secret file.
struct Canary {
    dir: PathBuf,
    file: PathBuf,
}

impl Canary {
    fn new(kiln: &Kiln) -> Self {
        let dir = kiln.path("canary");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let file = dir.join("secret");
        fs::write(&file, format!("{MARK}\n")).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        Self { dir, file }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn file(&self) -> &str {
        self.file.to_str().unwrap()
    }

    /// Neither written, chmodded, chowned, removed nor added to.
    fn assert_intact(&self, what: &str) {
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "{what}: canary directory changed");
        assert_eq!(
            fs::read_to_string(&self.file).unwrap(),
            format!("{MARK}\n"),
            "{what}: canary written"
        );
        let dir = fs::metadata(&self.dir).unwrap();
        let file = fs::metadata(&self.file).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o750, "{what}: canary dir chmodded");
        assert_eq!(file.mode() & 0o7777, 0o600, "{what}: canary chmodded");
        assert_eq!((file.uid(), dir.uid()), (0, 0), "{what}: canary chowned");
    }

    /// `text` (an output, a file of an image) does not hold the secret,
    /// which is this canary's own.
    fn assert_unread(&self, what: &str, text: &str) {
        let secret = fs::read_to_string(&self.file).unwrap();
        assert!(
            !text.contains(secret.trim()),
            "{what}: the canary was read:\n{text}"
        );
    }
}

/// `../` repeated enough to climb from any root to `/`.
fn up() -> String {
    "../".repeat(24)
}

/// A layer of busybox's root file system (the test's base image).
fn busybox_layer(kiln: &Kiln) -> Vec<u8> {
    let rootfs = kiln.path("bb-rootfs");
    common::busybox_rootfs(&rootfs);
    for applet in ["find", "grep", "stat", "chmod", "rm"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    common::layer_of_dir(&rootfs)
}

/// Links in a lower layer, then entries that write, link and chmod
/// through them in an upper one.
fn hostile_layers(canary: &Canary) -> (Vec<u8>, Vec<u8>) {
    let mut links = Vec::new();
    tar_entry(&mut links, "abs", b'2', canary.dir(), b"");
    tar_entry(
        &mut links,
        "rel",
        b'2',
        &format!("{}{}", up(), canary.dir()),
        b"",
    );
    tar_entry(&mut links, "dangling", b'2', "/nonexistent-dir", b"");
    tar_entry(&mut links, "file", b'2', canary.file(), b"");
    tar_end(&mut links);
    let mut through = Vec::new();
    tar_entry(&mut through, "abs/pwned", b'0', "", b"pwned\n");
    tar_entry(&mut through, "rel/pwned", b'0', "", b"pwned\n");
    tar_entry(&mut through, "dangling/pwned", b'0', "", b"pwned\n");
    tar_entry_mode(&mut through, "abs/", b'5', "", b"", 0o777);
    tar_entry(&mut through, "hard-abs", b'1', canary.file(), b"");
    tar_entry(&mut through, "hard-link", b'1', "file", b"");
    tar_entry(&mut through, "hard-through", b'1', "abs/secret", b"");
    tar_end(&mut through);
    (links, through)
}

#[test]
fn hostile_layers_stay_in_their_snapshots_on_load_and_run() {
    let kiln = busybox();
    let canary = Canary::new(&kiln);
    let (links, through) = hostile_layers(&canary);
    let archive = common::oci_archive(
        "docker.io/library/hostile:1",
        &[busybox_layer(&kiln), links, through],
    );
    let path = kiln.path("hostile.tar");
    fs::write(&path, archive).unwrap();
    // Loading may refuse the image or keep it; either way the host is
    // untouched and nothing in it reads the canary.
    let output = kiln.run(&["load", "-i", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    canary.assert_intact("load");
    canary.assert_unread("load", &stderr);
    if output.status.success() {
        let out = kiln.run(&[
            "run",
            "--rm",
            "hostile:1",
            "sh",
            "-c",
            "cat /abs/secret /rel/secret /file /hard-abs /hard-link /hard-through; \
             echo write > /abs/run-pwned; chmod 777 /abs /file; ls -la / /abs",
        ]);
        canary.assert_intact("run");
        canary.assert_unread("run", &String::from_utf8_lossy(&out.stdout));
        canary.assert_unread("run", &String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn hostile_imports_stay_in_their_snapshot() {
    let kiln = Kiln::new();
    let canary = Canary::new(&kiln);
    let (links, through) = hostile_layers(&canary);
    // One tar holding both: links, then entries through them.
    let mut tar = links[..links.len() - 1024].to_vec();
    tar.extend_from_slice(&through);
    let mut escapes = Vec::new();
    tar_entry(
        &mut escapes,
        &format!("{}{}/x", up(), canary.dir()),
        b'0',
        "",
        b"x",
    );
    tar_entry(&mut escapes, &format!("{}/y", canary.dir()), b'0', "", b"y");
    tar_end(&mut escapes);
    for (name, tar) in [("links", tar), ("escapes", escapes)] {
        let path = kiln.path(&format!("{name}.tar"));
        fs::write(&path, tar).unwrap();
        let output = kiln.run(&["import", path.to_str().unwrap(), &format!("{name}:1")]);
        canary.assert_intact(name);
        canary.assert_unread(name, &String::from_utf8_lossy(&output.stderr));
    }
}

/// Builds `dir`; returns whether it succeeded and its output.
fn try_build(kiln: &Kiln, dir: &Path, tag: &str) -> (bool, String) {
    let output = build(kiln, &["-t", tag, dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The stage every build scenario starts from: links to the canary by
/// absolute and relative paths, a dangling one, and `/swap`, a directory
/// here that stage `other` has as a link to the canary.
fn stages(canary: &Canary) -> String {
    format!(
        "FROM bb:1 AS evil\n\
         RUN ln -s {dir} /abs && ln -s {up}{dir} /rel && ln -s /nonexistent /dangling && \
             ln -s {file} /file && mkdir /swap && echo inside > /swap/secret\n\
         FROM bb:1 AS other\n\
         RUN ln -s {dir} /swap\n",
        dir = canary.dir(),
        file = canary.file(),
        up = up(),
    )
}

#[test]
fn add_and_copy_write_only_inside_the_stage() {
    let kiln = busybox();
    let canary = Canary::new(&kiln);
    let (links, through) = hostile_layers(&canary);
    let dockerfile = format!(
        "{}FROM evil\n\
         ADD links.tar /\n\
         ADD through.tar /\n\
         ADD through.tar /abs/\n\
         COPY payload /abs/copied\n\
         COPY payload /rel/copied\n\
         COPY payload /dangling/copied\n\
         COPY payload /file\n\
         COPY --from=other /swap /swapped\n\
         COPY --from=evil /swap /swap-from-evil\n\
         COPY --chmod=777 payload /abs/\n\
         RUN cat /abs/secret /file /swapped/secret /hard-abs 2>&1; ls -la /abs /swapped; true\n",
        stages(&canary)
    );
    let ctx = context(&kiln, "copy", &dockerfile, &[("payload", "payload\n")]);
    fs::write(ctx.join("links.tar"), &links).unwrap();
    fs::write(ctx.join("through.tar"), &through).unwrap();
    let (ok, out) = try_build(&kiln, &ctx, "copied:1");
    canary.assert_intact("ADD/COPY");
    canary.assert_unread("ADD/COPY", &out);
    if ok {
        let files = sh(
            &kiln,
            "copied:1",
            "cat /abs/secret /abs/copied /file /swapped/secret 2>&1; true",
        );
        canary.assert_unread("ADD/COPY image", &files);
    }
    // Sources read through a link: the stage's own paths, never the host's.
    for source in ["/abs/secret", "/rel/secret", "/file", "/dangling"] {
        let dockerfile = format!(
            "{}FROM bb:1\nCOPY --from=evil {source} /got\n",
            stages(&canary)
        );
        let ctx = context(&kiln, "from", &dockerfile, &[]);
        let (ok, out) = try_build(&kiln, &ctx, "from:1");
        canary.assert_intact(source);
        canary.assert_unread(source, &out);
        if ok {
            canary.assert_unread(source, &sh(&kiln, "from:1", "cat /got 2>&1; true"));
        }
    }
    // A context whose links point out of it.
    let ctx = context(
        &kiln,
        "ctxlinks",
        "FROM bb:1\nCOPY . /ctx\nRUN cat /ctx/out/secret /ctx/file 2>&1; true\n",
        &[],
    );
    std::os::unix::fs::symlink(canary.dir(), ctx.join("out")).unwrap();
    std::os::unix::fs::symlink(canary.file(), ctx.join("file")).unwrap();
    let (ok, out) = try_build(&kiln, &ctx, "ctxlinks:1");
    assert!(ok, "{out}");
    canary.assert_intact("context links");
    canary.assert_unread("context links", &out);
}

#[test]
fn run_mounts_reach_only_their_own_roots() {
    let kiln = busybox();
    let canary = Canary::new(&kiln);
    let cases = [
        "--mount=type=bind,from=evil,source=/abs,target=/m",
        "--mount=type=bind,from=evil,source=/abs/secret,target=/m",
        "--mount=type=bind,from=evil,source=/rel,target=/m",
        "--mount=type=bind,from=evil,source=/file,target=/m",
        "--mount=type=bind,from=evil,source=/dangling,target=/m",
        "--mount=type=bind,from=other,source=/swap,target=/m,rw",
        "--mount=type=bind,from=evil,source=/swap,target=/m,rw",
        "--mount=type=bind,source=out,target=/m",
        "--mount=type=bind,source=out/secret,target=/m",
        "--mount=type=bind,target=/m,rw",
        "--mount=type=cache,from=evil,source=/abs,target=/m",
        "--mount=type=cache,from=other,source=/swap,target=/m",
        "--mount=type=cache,target=/abs/m",
        "--mount=type=tmpfs,target=/abs/m",
        "--mount=type=secret,id=s,target=/abs/m",
        "--mount=type=secret,id=s,target=/file",
    ];
    for (i, mount) in cases.iter().enumerate() {
        let dockerfile = format!(
            "{}FROM evil\n\
             RUN {mount} sh -c 'cat /m /m/secret /m/out/secret /abs/secret /file 2>&1; \
                 echo pwned > /m/pwned; echo pwned > /m; chmod 777 /m /m/secret; \
                 rm -rf /m/secret /m/* 2>&1; true'\n",
            stages(&canary)
        );
        let ctx = context(&kiln, &format!("mount{i}"), &dockerfile, &[]);
        let out_link = ctx.join("out");
        if !out_link.exists() {
            std::os::unix::fs::symlink(canary.dir(), &out_link).unwrap();
        }
        let secret = kiln.path("secret-value");
        fs::write(&secret, "s\n").unwrap();
        let output = build(
            &kiln,
            &[
                "--secret",
                &format!("id=s,src={}", secret.display()),
                "-t",
                &format!("mount{i}:1"),
                ctx.to_str().unwrap(),
            ],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        canary.assert_intact(mount);
        canary.assert_unread(mount, &text);
    }
}
