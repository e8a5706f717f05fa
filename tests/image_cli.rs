//! End-to-end tests of the image commands on a temporary store: import,
//! load, save, images, tag, rmi, inspect, history, prune, system.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use common::Kiln;

#[test]
fn import_save_load_round_trip_keeps_ids_and_layers() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let layers = kiln.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", "app:1"]);
    for format in ["docker", "oci"] {
        let archive = kiln.path(&format!("app-{format}.tar"));
        kiln.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "app:1",
        ]);
        let fresh = Kiln::new();
        let out = fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: app:1\n", "{format}");
        assert_eq!(
            fresh.ok(&["images", "-q", "--no-trunc"]).trim(),
            id,
            "{format}"
        );
        assert_eq!(
            fresh.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", "app:1"]),
            layers,
            "{format}"
        );
        assert!(fresh.ok(&["system", "check"]).contains("is consistent"));
    }
    // The OCI format keeps the stored (compressed) layer digests too.
    let archive = kiln.path("app-oci.tar");
    let fresh = Kiln::new();
    fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
    let digest = |k: &Kiln| {
        let inspect: serde_json::Value =
            serde_json::from_str(&k.ok(&["inspect", "app:1"])).unwrap();
        inspect[0]["Descriptor"]["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(digest(&fresh), digest(&kiln));
}

#[test]
fn load_from_stdin_and_quiet() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    let archive = kiln.command().args(["save", "app:1"]).output().unwrap();
    assert!(archive.status.success());
    let fresh = Kiln::new();
    let out = fresh
        .command()
        .args(["load", "-q"])
        .write_stdin(archive.stdout)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(fresh.ok(&["images"]).contains("app "));
}

#[test]
fn untagged_images_load_by_id() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    let archive = kiln.path("by-id.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), &id[7..19]]);
    let fresh = Kiln::new();
    assert_eq!(
        fresh.ok(&["load", "-i", archive.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
    let listing = fresh.ok(&["images"]);
    assert!(listing.contains("<none>       <none>"), "{listing}");
}

#[test]
fn images_lists_like_docker() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    kiln.ok(&["tag", "app:1", "localhost:5000/team/app:2"]);
    let listing = kiln.ok(&["images"]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines[0],
        "REPOSITORY                TAG       IMAGE ID       CREATED                  SIZE"
    );
    assert!(
        lines[1].starts_with("app                       1         "),
        "{listing}"
    );
    assert!(lines[1].contains(&id[7..19]), "{listing}");
    assert!(lines[1].contains("Less than a second ago") || lines[1].contains("second"));
    assert!(
        lines[2].starts_with("localhost:5000/team/app   2         "),
        "{listing}"
    );
    assert_eq!(lines.len(), 3);
    // Filters and templates.
    assert_eq!(
        kiln.ok(&[
            "images",
            "--filter",
            "reference=app",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ]),
        "app:1\n"
    );
    assert_eq!(
        kiln.ok(&[
            "images",
            "--filter",
            "reference=*/*/app:*",
            "--format",
            "{{.Tag}}"
        ]),
        "2\n"
    );
    assert_eq!(kiln.ok(&["images", "--filter", "dangling=true", "-q"]), "");
    assert_eq!(kiln.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));
    let json: serde_json::Value = serde_json::from_str(
        kiln.ok(&["images", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["Repository"], "app");
    assert_eq!(json["ID"], &id[7..19]);
    assert!(kiln.ok(&["images", "--digests"]).contains("DIGEST"));
    assert_eq!(kiln.ok(&["images", "app", "--format", "{{.Tag}}"]), "1\n");
}

#[test]
fn label_and_time_filters() {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::sample_rootfs(&rootfs, "x");
    let rootfs = rootfs.to_str().unwrap();
    kiln.command()
        .env("SOURCE_DATE_EPOCH", "1000")
        .args(["import", rootfs, "old:1", "--change", "LABEL team=a"])
        .assert()
        .success();
    kiln.command()
        .env("SOURCE_DATE_EPOCH", "2000")
        .args([
            "import",
            rootfs,
            "new:1",
            "--change",
            "LABEL team=b other=1",
        ])
        .assert()
        .success();
    let names =
        |filter: &str| kiln.ok(&["images", "--filter", filter, "--format", "{{.Repository}}"]);
    assert_eq!(names("label=team=a"), "old\n");
    assert_eq!(names("label=other"), "new\n");
    assert_eq!(names("before=new:1"), "old\n");
    assert_eq!(names("since=old:1"), "new\n");
    assert!(
        kiln.fails(&["images", "--filter", "colour=red"])
            .contains("invalid filter 'colour'")
    );
}

#[test]
fn history_shows_steps_like_docker() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    let history = kiln.ok(&["history", "app:1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(
        lines[0],
        "IMAGE          CREATED                  CREATED BY   SIZE      COMMENT"
    );
    assert!(lines[1].starts_with(&id[7..19]), "{history}");
    assert!(lines[1].contains("Imported from"), "{history}");
    assert_eq!(
        kiln.ok(&["history", "-q", "app:1"]),
        format!("{}\n", &id[7..19])
    );
    assert_eq!(
        kiln.ok(&["history", "--no-trunc", "--format", "{{.ID}}", "app:1"]),
        format!("{id}\n")
    );
    let raw = kiln.ok(&["history", "-H=false", "--format", "{{.Size}}", "app:1"]);
    assert!(raw.trim().parse::<u64>().is_ok(), "{raw}");
}

#[test]
fn import_changes_apply_as_the_dockerfile_instructions_do() {
    // As Docker's dispatchers: an ENTRYPOINT keeps a CMD set before it in
    // the same list, ENV replaces a key in place, EXPOSE and VOLUME add
    // to sets; and (Docker's import, unlike BuildKit's CMD) no
    // ArgsEscaped.
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::sample_rootfs(&rootfs, "x");
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "changed:1",
        "--change",
        "ENV A=1 B=2",
        "--change",
        "CMD [\"serve\"]",
        "--change",
        "ENTRYPOINT [\"/app\"]",
        "--change",
        "ENV A=3",
        "--change",
        "EXPOSE 80 80/udp",
        "--change",
        "VOLUME /data",
        "--change",
        "USER 1000:1000",
    ]);
    let f = |template: &str| kiln.ok(&["inspect", "-f", template, "changed:1"]);
    assert_eq!(f("{{json .Config.Cmd}}"), "[\"serve\"]\n");
    assert_eq!(f("{{json .Config.Entrypoint}}"), "[\"/app\"]\n");
    assert_eq!(f("{{.Config.Env}}"), "[A=3 B=2]\n");
    assert_eq!(
        f("{{json .Config.ExposedPorts}}"),
        "{\"80/tcp\":{},\"80/udp\":{}}\n"
    );
    assert_eq!(f("{{json .Config.Volumes}}"), "{\"/data\":{}}\n");
    assert_eq!(f("{{.Config.User}}"), "1000:1000\n");
    assert_eq!(f("{{json .Config.ArgsEscaped}}"), "false\n");
    // An ENTRYPOINT before any CMD clears the CMD, as in a Dockerfile.
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "changed:2",
        "--change",
        "ENTRYPOINT [\"/app\"]",
    ]);
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{json .Config.Cmd}}", "changed:2"]),
        "null\n"
    );
}

#[test]
fn inspect_templates_and_json_shape() {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::sample_rootfs(&rootfs, "x");
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "app:1",
        "--change",
        "ENV PATH=/usr/bin A=1",
        "--change",
        "LABEL k=v b=2",
        "--change",
        "CMD [\"echo\", \"hi\"]",
        "--change",
        "WORKDIR /srv",
    ]);
    let f = |template: &str| kiln.ok(&["inspect", "-f", template, "app:1"]);
    assert_eq!(f("{{.Config.Env}}"), "[PATH=/usr/bin A=1]\n");
    assert_eq!(f("{{.Config.Labels}}"), "map[b:2 k:v]\n");
    assert_eq!(f("{{index .Config.Labels \"k\"}}"), "v\n");
    assert_eq!(f("{{join .Config.Cmd \" \"}}"), "echo hi\n");
    assert_eq!(f("{{.Config.WorkingDir}}"), "/srv\n");
    assert_eq!(f("{{json .Config.Cmd}}"), "[\"echo\",\"hi\"]\n");
    assert_eq!(f("{{len .RootFS.Layers}}"), "1\n");
    assert_eq!(f("{{if .Config.Entrypoint}}yes{{else}}no{{end}}"), "no\n");
    assert_eq!(f("{{upper .Os}}"), "LINUX\n");
    assert_eq!(f("{{.Config.Healthcheck}}"), "<nil>\n");
    let layers = f("{{range .RootFS.Layers}}{{println .}}{{end}}");
    assert!(
        layers.starts_with("sha256:") && layers.ends_with("\n\n"),
        "{layers:?}"
    );
    let error = kiln.fails(&["inspect", "-f", "{{.Nope}}", "app:1"]);
    assert!(
        error.contains("map has no entry for key \"Nope\""),
        "{error}"
    );
    let error = kiln.fails(&["inspect", "-f", "{{nope .Os}}", "app:1"]);
    assert!(error.contains("function \"nope\" not defined"), "{error}");

    let json: serde_json::Value = serde_json::from_str(&kiln.ok(&["inspect", "app:1"])).unwrap();
    let image = &json[0];
    for key in [
        "Id",
        "RepoTags",
        "RepoDigests",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "RootFS",
    ] {
        assert!(image.get(key).is_some(), "missing {key}");
    }
    assert_eq!(image["RepoTags"][0], "app:1");
    assert_eq!(image["Config"]["Labels"]["k"], "v");
    assert_eq!(image["RootFS"]["Type"], "layers");
}

#[test]
fn tag_and_rmi_follow_docker_rules() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    kiln.ok(&["tag", "app:1", "app:2"]);
    let short = &id[7..19];
    assert_eq!(
        kiln.fails(&["rmi", short]),
        format!(
            "error: conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories\n"
        )
    );
    assert_eq!(kiln.ok(&["rmi", "app:2"]), "Untagged: app:2\n");
    assert_eq!(
        kiln.ok(&["rmi", "app:1"]),
        format!("Untagged: app:1\nDeleted: {id}\n")
    );
    assert_eq!(kiln.ok(&["images", "-q"]), "");
    // Everything of the image is gone from disk.
    let blobs = fs::read_dir(kiln.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);

    let id = kiln.import_sample("app:1");
    kiln.ok(&["tag", "app:1", "app:2"]);
    assert_eq!(
        kiln.ok(&["rmi", "-f", &id[7..19]]),
        format!("Untagged: app:1\nUntagged: app:2\nDeleted: {id}\n")
    );
}

#[test]
fn unknown_images_and_bad_references_are_named() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    for args in [
        vec!["save", "-o", "/dev/null", "nope"],
        vec!["image", "inspect", "nope"],
        vec!["inspect", "--type", "image", "nope"],
        vec!["history", "nope"],
        vec!["tag", "nope", "x"],
        vec!["rmi", "nope"],
    ] {
        assert_eq!(
            kiln.fails(&args),
            "error: no such image: nope\n",
            "{args:?}"
        );
    }
    assert_eq!(
        kiln.fails(&["tag", "app:1", "Bad:Name"]),
        "error: invalid reference format \"Bad:Name\": invalid reference format: repository name (library/Bad) must be lowercase\n"
    );
    assert_eq!(
        kiln.fails(&["tag", "app:1", "a b"]),
        "error: invalid reference format \"a b\": invalid reference format\n"
    );
    assert_eq!(
        kiln.fails(&["import", kiln.path("nothing").to_str().unwrap()]),
        format!(
            "error: cannot open {}\ncaused by: No such file or directory (os error 2)\n",
            kiln.path("nothing").display()
        )
    );
    let rootfs = kiln.path("rootfs-app_1");
    assert_eq!(
        kiln.fails(&["import", rootfs.to_str().unwrap(), "--change", "RUN true"]),
        "error: invalid --change \"RUN true\": RUN is not a valid change command (use one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR)\n"
    );
    let garbage = kiln.path("garbage");
    fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    assert_eq!(
        kiln.fails(&["load", "-i", garbage.to_str().unwrap()]),
        format!(
            "error: cannot load images from {}\ncaused by: invalid archive: not a tar archive (bad header checksum in the first block)\n",
            garbage.display()
        )
    );
}

#[test]
fn prune_removes_dangling_images_and_orphans() {
    let kiln = Kiln::new();
    let first = kiln.import_sample("app:1");
    // Re-using the tag for a different image leaves the first dangling.
    let rootfs = kiln.path("other");
    common::sample_rootfs(&rootfs, "other");
    kiln.ok(&["import", rootfs.to_str().unwrap(), "app:1"]);
    let listing = kiln.ok(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]);
    assert_eq!(listing, format!("{first}\n"));
    let out = kiln.ok(&["prune", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\ndeleted: {first}\n\nTotal reclaimed space: "
        )),
        "{out}"
    );
    assert_eq!(kiln.ok(&["images", "-q"]).lines().count(), 1);
    // Without -f, kiln asks; "n" keeps everything.
    let out = kiln
        .command()
        .args(["prune", "-a"])
        .write_stdin("n\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(kiln.ok(&["images", "-q"]).lines().count(), 1);
    kiln.command()
        .args(["prune", "-a"])
        .write_stdin("y\n")
        .assert()
        .success();
    assert_eq!(kiln.ok(&["images", "-q"]), "");
    assert_eq!(
        fs::read_dir(kiln.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn system_check_reports_broken_blobs_and_df_shows_usage() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    let df = kiln.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(df.contains("Images         1         1"), "{df}");
    let blob = kiln.root().join("blobs/sha256").join(&id[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&blob, bytes).unwrap();
    let output = kiln.run(&["system", "check"]);
    assert!(!output.status.success());
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(
        report.contains(&format!("blob {id}: digest mismatch")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "image docker.io/library/app:1: digest mismatch for {}",
            blob.display()
        )),
        "{report}"
    );
    // Every command that reads the config notices.
    for args in [
        vec!["inspect", "app:1"],
        vec!["history", "app:1"],
        vec!["images"],
    ] {
        let error = kiln.fails(&args);
        assert!(error.contains("digest mismatch"), "{args:?}: {error}");
    }
}

#[test]
fn a_killed_writer_leaves_a_usable_store() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    // What a kill -9 mid-write leaves: staging files and a stray temporary
    // index next to index.json.
    fs::write(kiln.root().join("tmp/blob-partial"), b"half a layer").unwrap();
    fs::create_dir(kiln.root().join("tmp/load-abandoned")).unwrap();
    fs::write(kiln.root().join(".tmp-index"), b"{\"schemaVe").unwrap();
    assert!(kiln.ok(&["images"]).contains("app"));
    assert!(kiln.ok(&["system", "check"]).contains("is consistent"));
    kiln.import_sample("app:2");
    kiln.ok(&["prune", "-f"]);
    assert_eq!(fs::read_dir(kiln.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn import_accepts_compressed_tarballs_and_stdin() {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::sample_rootfs(&rootfs, "packed");
    let tar = kiln.path("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let plain = fs::read(&tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    fs::write(kiln.path("rootfs.tar.gz"), gz.finish().unwrap()).unwrap();
    fs::write(
        kiln.path("rootfs.tar.zst"),
        zstd::stream::encode_all(&plain[..], 3).unwrap(),
    )
    .unwrap();
    let mut ids = Vec::new();
    for (name, file) in [
        ("plain", "rootfs.tar"),
        ("gz", "rootfs.tar.gz"),
        ("zst", "rootfs.tar.zst"),
    ] {
        let id = kiln.ok(&[
            "import",
            kiln.path(file).to_str().unwrap(),
            &format!("t:{name}"),
        ]);
        ids.push(id);
        assert_eq!(
            common::image_file(&kiln.root(), &format!("t:{name}"), "etc/name").as_deref(),
            Some("packed\n")
        );
    }
    let out = kiln
        .command()
        .args(["import", "-", "t:stdin", "-m", "from a pipe"])
        .write_stdin(plain)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        kiln.ok(&["history", "--format", "{{.Comment}}", "t:stdin"]),
        "from a pipe\n"
    );
    // Same content, same layer: the diff_ids agree whatever the input
    // compression.
    let layers = |name: &str| kiln.ok(&["inspect", "-f", "{{.RootFS.Layers}}", name]);
    assert_eq!(layers("t:plain"), layers("t:gz"));
    assert_eq!(layers("t:plain"), layers("t:zst"));
    assert_eq!(layers("t:plain"), layers("t:stdin"));
    // The setuid bit and the symlink survived.
    let snapshot = common::image_snapshots(&kiln.root(), "t:zst").remove(0);
    assert_eq!(
        fs::metadata(snapshot.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(snapshot.join("bin/alias")).unwrap().to_str(),
        Some("tool")
    );
}

#[test]
fn save_writes_several_images_and_is_atomic() {
    let kiln = Kiln::new();
    let first = kiln.import_sample("one:1");
    let second = kiln.import_sample("two:1");
    let archive = kiln.path("both.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "one:1", "two:1"]);
    // Created like any new file (0666 less the umask), not 0600.
    // SAFETY: umask only swaps the mask; the second call restores it.
    let umask = unsafe {
        let mask = libc::umask(0);
        libc::umask(mask);
        mask
    };
    assert_eq!(
        fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o666 & !umask
    );
    let fresh = Kiln::new();
    assert_eq!(
        fresh.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: one:1\nLoaded image: two:1\n"
    );
    let ids = fresh.ok(&["images", "-q", "--no-trunc"]);
    assert!(ids.contains(&first) && ids.contains(&second), "{ids}");
    // A corrupt layer makes save fail, and -o leaves no file behind.
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve("two:1").unwrap();
    let layer = kiln_reference::Digest::parse(&image.manifest.layers[0].digest).unwrap();
    let path = store.blobs().path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    drop(store);
    for format in ["docker", "oci"] {
        let target = kiln.path(&format!("broken-{format}.tar"));
        let error = kiln.fails(&[
            "save",
            "--format",
            format,
            "-o",
            target.to_str().unwrap(),
            "two:1",
        ]);
        assert!(
            error.contains("mismatch") || error.contains("corrupt") || error.contains("invalid"),
            "{format}: {error}"
        );
        assert!(!target.exists(), "{format}: a partial archive was left");
        let leftovers: Vec<_> = fs::read_dir(kiln.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".kiln-save"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

#[test]
fn images_resolve_by_digest_reference_and_id_prefix() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    let inspect: serde_json::Value = serde_json::from_str(&kiln.ok(&["inspect", "app:1"])).unwrap();
    let repo_digest = inspect[0]["RepoDigests"][0].as_str().unwrap().to_owned();
    assert!(repo_digest.starts_with("app@sha256:"), "{repo_digest}");
    for name in [
        repo_digest.as_str(),
        "docker.io/library/app:1",
        "app:1",
        &id,
        &id[7..],
        &id[7..10],
    ] {
        assert_eq!(
            kiln.ok(&["inspect", "-f", "{{.Id}}", name]).trim(),
            id,
            "{name}"
        );
    }
    // `app` alone means app:latest, which does not exist (nor does a
    // container of that name: Docker's words for neither).
    assert_eq!(
        kiln.fails(&["inspect", "app"]),
        "error: No such object: app\n"
    );
}

#[test]
fn prune_removes_orphan_snapshots() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    assert!(common::image_file(&kiln.root(), "app:1", "etc/name").is_some());
    assert_eq!(
        fs::read_dir(kiln.root().join("snapshots")).unwrap().count(),
        1
    );
    let df = kiln.ok(&["system", "df"]);
    assert!(df.contains("Snapshots      1         1"), "{df}");
    // A snapshot survives prune while its image exists...
    kiln.ok(&["prune", "-f"]);
    assert_eq!(
        fs::read_dir(kiln.root().join("snapshots")).unwrap().count(),
        1
    );
    // ...and goes with it.
    kiln.ok(&["rmi", "app:1"]);
    assert_eq!(
        fs::read_dir(kiln.root().join("snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn reloading_an_image_in_another_format_leaves_no_dangling_twin() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    // docker format: the same config under a manifest with uncompressed
    // layers, i.e. another manifest digest for the same image ID.
    let archive = kiln.path("app.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    assert_eq!(
        kiln.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: app:1\n"
    );
    assert_eq!(
        kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
        format!("app:1 {}\n", &id[7..19])
    );
    // Untagged, by ID: nothing new either.
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), &id]);
    assert_eq!(
        kiln.ok(&["load", "-i", archive.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
    assert_eq!(kiln.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));
    assert!(kiln.ok(&["system", "check"]).contains("consistent"));
}

#[test]
fn dockers_command_groups_are_the_same_commands() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    assert_eq!(kiln.ok(&["image", "ls"]), kiln.ok(&["images"]));
    assert_eq!(
        kiln.ok(&["image", "list", "-q"]),
        kiln.ok(&["images", "-q"])
    );
    assert_eq!(
        kiln.ok(&["image", "inspect", "app:1"]),
        kiln.ok(&["inspect", "app:1"])
    );
    assert_eq!(
        kiln.ok(&["image", "history", "app:1"]),
        kiln.ok(&["history", "app:1"])
    );
    kiln.ok(&["image", "tag", "app:1", "app:2"]);
    assert!(kiln.ok(&["images"]).contains("app          2"));
    kiln.ok(&["image", "rm", "app:2"]);
    assert!(!kiln.ok(&["images"]).contains("app          2"));
    assert_eq!(kiln.ok(&["builder", "du"]), kiln.ok(&["cache", "du"]));
    kiln.ok(&["builder", "prune", "-f"]);
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `version`, `info` and `system df -v` in Docker's shapes (issue 16).
#[test]
fn version_info_and_verbose_df_look_like_docker() {
    let kiln = Kiln::new();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        kiln.ok(&["version"]),
        format!(
            "Client: kiln\n Version:           {version}\n OS/Arch:           linux/{}\n",
            docker_arch()
        )
    );
    assert_eq!(
        kiln.ok(&["version", "--format", "{{.Client.Version}} {{.Client.Os}}"]),
        format!("{version} linux\n")
    );

    let id = kiln.import_sample("app:1");
    kiln.ok(&["tag", "app:1", "app:2"]);
    let info = kiln.ok(&["info"]);
    assert_eq!(info, kiln.ok(&["system", "info"]));
    assert!(
        info.starts_with(&format!(
            "Client:\n Version:    {version}\n\nServer:\n Containers: 0\n  Running: 0\n  Paused: 0\n  Stopped: 0\n Images: 1\n Server Version: {version}\n Storage Driver: overlay\n  Backing Filesystem: "
        )),
        "{info}"
    );
    let root = kiln.root();
    for line in [
        " Default Runtime: kiln\n".to_owned(),
        format!(
            " OSType: linux\n Architecture: {}\n",
            std::env::consts::ARCH
        ),
        format!(" Kiln Root Dir: {}\n", root.display()),
    ] {
        assert!(info.contains(&line), "{line:?} in {info}");
    }
    assert_eq!(
        kiln.ok(&[
            "info",
            "--format",
            "{{.Images}} {{.Containers}} {{.Driver}} {{.OSType}} {{.DockerRootDir}}"
        ]),
        format!("1 0 overlay linux {}\n", root.display())
    );
    assert_eq!(
        kiln.fails(&["info", "--format", "{{.Nope}}"]),
        "error: template: :1:2: executing \"\" at <.Nope>: map has no entry for key \"Nope\"\n"
    );

    let df = kiln.ok(&["system", "df", "-v"]);
    let short = &id[7..19];
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(lines[0], "Images space usage:");
    assert_eq!(lines[1], "");
    // Column widths follow the CREATED text, which depends on the clock.
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>().join(" "),
        "REPOSITORY TAG IMAGE ID CREATED SIZE SHARED SIZE UNIQUE SIZE CONTAINERS"
    );
    for (line, tag) in [(lines[3], "1"), (lines[4], "2")] {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..3], ["app", tag, short], "{line}");
        assert_eq!(fields.last(), Some(&"0"), "{line}");
    }
    assert_eq!(
        lines[5..].join("\n"),
        "\n\
         Containers space usage:\n\
         \n\
         CONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES\n\
         \n\
         Local Volumes space usage:\n\
         \n\
         VOLUME NAME   LINKS     SIZE\n\
         \n\
         Build cache usage: 0B\n\
         \n\
         CACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED"
    );
}

/// `inspect --type` as Docker's (issue 16): `image` finds images only,
/// `container` containers only (kiln has none yet), anything else is
/// refused in Docker's words; found objects print, missing ones are
/// named on stderr, and the exit status is 1.
#[test]
fn inspect_type_picks_the_object_kind() {
    let kiln = Kiln::new();
    let id = kiln.import_sample("app:1");
    assert_eq!(
        kiln.ok(&["inspect", "--type", "image", "-f", "{{.ID}}", "app:1"]),
        format!("{id}\n")
    );
    assert_eq!(
        kiln.ok(&["inspect", "--type=image", "app:1"]),
        kiln.ok(&["inspect", "app:1"])
    );
    let output = kiln.run(&["inspect", "--type", "container", "app:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "[]\n");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: No such container: app:1\n"
    );
    assert_eq!(
        kiln.fails(&["inspect", "--type", "image", "nope"]),
        "error: no such image: nope\n"
    );
    let output = kiln.run(&[
        "inspect", "--type", "image", "-f", "{{.ID}}", "nope", "app:1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{id}\n"));
    assert_eq!(
        kiln.fails(&["inspect", "--type", "volume", "app:1"]),
        "error: \"volume\" is not a valid value for --type\n"
    );
}

#[test]
fn a_reader_that_left_ends_kiln_quietly_as_sigpipe_would() {
    use std::os::fd::FromRawFd as _;
    let kiln = Kiln::new();
    kiln.import_sample("sample:1");
    // A pipe whose reading end is closed before kiln writes a byte, as
    // `kiln history sample:1 | head -0`.
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are fresh and ours.
    let (reader, writer) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(["history", "sample:1"])
        .env_remove("KILN_ROOT")
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
