//! The store on a host where paths are mistyped, files planted, and filesystems read-only or
//! full: qrouter never takes a missing or broken store for an empty one, never creates one
//! to read, and says which file and why.

mod common;

use std::process::Output;

use common::*;

/// Exit code and stderr of a failed command.
fn failed(out: Output) -> (Option<i32>, String) {
    assert!(!out.status.success(), "it succeeded");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_dir(dir: &str, args: &[&str]) -> Output {
    command(args)
        .env("QROUTER_STATE_DIR", dir)
        .output()
        .unwrap()
}

fn router_namespace_exists(name: &str) -> bool {
    let ns = namespace_of("router", name);
    std::path::Path::new("/run/netns").join(ns).exists()
}

#[test]
fn sync_against_a_mistyped_state_dir_refuses_and_deletes_nothing() {
    sandboxed(|| {
        ok(&["router", "create", "r1"]);
        assert!(router_namespace_exists("r1"));
        let kernel = kernel_snapshot();
        for args in [&["sync"][..], &["sync", "--dry-run"]] {
            let (code, err) = failed(with_dir("/run/typo", args));
            assert_eq!(code, Some(1), "{err}");
            assert!(
                err.contains("store /run/typo/qrouter.db: no such store; nothing to sync"),
                "{err}"
            );
        }
        // Nor from a batch, whose sync line would find a store the batch created.
        let mut batch = command(&["batch", "-"]);
        batch.env("QROUTER_STATE_DIR", "/run/typo");
        batch.stdin(std::process::Stdio::piped());
        batch.stdout(std::process::Stdio::piped());
        batch.stderr(std::process::Stdio::piped());
        let mut child = batch.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"router list\nsync\n")
            .unwrap();
        let (code, err) = failed(child.wait_with_output().unwrap());
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("/run/typo/qrouter.db: no such store"), "{err}");
        assert!(!std::path::Path::new("/run/typo").exists());
        assert!(router_namespace_exists("r1"));
        assert_eq!(kernel_snapshot(), kernel);
        // The real store still syncs.
        ok(&["sync"]);
    });
}

#[test]
fn reading_a_missing_store_creates_nothing() {
    sandboxed(|| {
        for args in [
            &["router", "list"][..],
            &["network", "list", "-f", "json"],
            &["port", "list"],
            &["floating", "ip", "list"],
        ] {
            let out = with_dir("/run/missing/state", args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let json = with_dir("/run/missing/state", &["router", "list", "-f", "json"]);
        assert_eq!(String::from_utf8_lossy(&json.stdout).trim(), "[]");
        let (_, err) = failed(with_dir("/run/missing/state", &["router", "show", "r1"]));
        assert!(err.contains("no such router"), "{err}");
        assert!(!std::path::Path::new("/run/missing").exists());
        // A change creates it: the directory 0700, the store beside nothing half made.
        let out = with_dir("/run/missing/state", &["router", "create", "r1"]);
        assert!(out.status.success());
        let meta = std::fs::metadata("/run/missing/state").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(std::path::Path::new("/run/missing/state/qrouter.db").exists());
    });
}

#[test]
fn an_empty_or_planted_store_file_is_refused() {
    sandboxed(|| {
        std::fs::create_dir_all("/run/empty").unwrap();
        std::fs::write("/run/empty/qrouter.db", "").unwrap();
        for args in [
            &["router", "list"][..],
            &["sync"],
            &["router", "create", "r1"],
        ] {
            let (code, err) = failed(with_dir("/run/empty", args));
            assert_eq!(code, Some(1), "{err}");
            assert!(err.contains("store /run/empty/qrouter.db"), "{err}");
        }
        assert_eq!(std::fs::metadata("/run/empty/qrouter.db").unwrap().len(), 0);
        // A symlink planted for the store: refused, and its target never created.
        std::fs::create_dir_all("/run/planted").unwrap();
        std::os::unix::fs::symlink("/run/victim", "/run/planted/qrouter.db").unwrap();
        for args in [&["router", "list"][..], &["router", "create", "r1"]] {
            let (code, err) = failed(with_dir("/run/planted", args));
            assert_eq!(code, Some(1), "{err}");
            assert!(
                err.contains("store /run/planted/qrouter.db: a symbolic link"),
                "{err}"
            );
        }
        assert!(!std::path::Path::new("/run/victim").exists());
        // A directory anyone may write to: refused, and its mode left alone.
        std::fs::create_dir_all("/run/shared").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions("/run/shared", std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (code, err) = failed(with_dir("/run/shared", &["router", "create", "r1"]));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("state directory /run/shared: refusing to use it"),
            "{err}"
        );
        let mode = std::fs::metadata("/run/shared")
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777);
    });
}

#[test]
fn reads_work_on_a_read_only_filesystem_and_writes_say_why_not() {
    sandboxed(|| {
        ok(&["router", "create", "r1"]);
        sh_ok(&format!(
            "mount --bind {STATE_DIR} {STATE_DIR} && mount -o remount,bind,ro {STATE_DIR}"
        ));
        let list = ok(&["router", "list", "-f", "value", "-c", "name"]);
        assert_eq!(list.trim(), "r1");
        ok(&["router", "show", "r1"]);
        ok(&["sync", "--dry-run"]);
        let (code, err) = failed(qrouter(&["router", "create", "r2"]));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!("store {STATE_DIR}/qrouter.db"))
                && err.contains("read-only file system"),
            "{err}"
        );
        sh_ok(&format!("umount {STATE_DIR}"));
        assert_eq!(
            ok(&["router", "list", "-f", "value", "-c", "name"]).trim(),
            "r1"
        );
    });
}

#[test]
fn reads_work_on_a_full_filesystem_and_writes_say_why_not() {
    sandboxed(|| {
        sh_ok(&format!(
            "mkdir -p {STATE_DIR} && mount -t tmpfs -o size=1m,mode=700 full {STATE_DIR}"
        ));
        ok(&["router", "create", "r1"]);
        // Fill it: dd stops at "No space left on device".
        sh(&format!("dd if=/dev/zero of={STATE_DIR}/fill bs=4k"));
        let list = ok(&["router", "list", "-f", "value", "-c", "name"]);
        assert_eq!(list.trim(), "r1");
        let (code, err) = failed(qrouter(&["router", "create", "r2"]));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!("store {STATE_DIR}/qrouter.db"))
                && err.contains("no space left on device"),
            "{err}"
        );
        std::fs::remove_file(format!("{STATE_DIR}/fill")).unwrap();
        ok(&["router", "create", "r2"]);
    });
}

/// `show` by exact name reads part of the store; by id prefix, the whole of it. Both print
/// the same, for every kind that reads part, on the seed with a floating IP and a second
/// router beside it.
#[test]
fn a_show_that_reads_part_of_the_store_prints_what_the_whole_store_gives() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        second_router();
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--instance",
            "cirros-vm3",
        ]);
        let address = value(&["floating", "ip", "list"], "Floating IP Address");
        let shown = [
            (&["network"][..], "vlan101"),
            (&["network"], "ext_net"),
            (&["subnet"], "ext"),
            (&["subnet"], "vlan100"),
            (&["instance"], "cirros-vm3"),
            (&["instance"], "upstream"),
            (&["floating", "ip"], address.as_str()),
        ];
        for (kind, key) in shown {
            let show = |key: &str| {
                let args: Vec<&str> = kind
                    .iter()
                    .copied()
                    .chain(["show", key, "-f", "json"])
                    .collect();
                ok(&args)
            };
            let id = value(&[kind, &["show", key]].concat(), "id");
            assert_eq!(show(key), show(&id[..8]), "{kind:?} {key}");
        }
    });
}
