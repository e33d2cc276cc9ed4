//! Opening the store safely: never made by a read, never a symlink, never a file or directory
//! others can write, an id of its own, and errors that name the path and say why.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{Sqlite, SCHEMA, SCHEMA_VERSION};

impl Sqlite {
    /// The store in `dir` for a command that may change it. Nothing is created here: a
    /// missing store reads as empty until the first write (`begin`) creates it.
    pub fn open(dir: &Path) -> anyhow::Result<Sqlite> {
        Sqlite::open_as(dir, true)
    }

    /// The store in `dir` for a command that only reads: a missing store reads as empty and
    /// is never created; the file is opened read-only, so a read-only or full filesystem
    /// still serves reads.
    pub fn open_read_only(dir: &Path) -> anyhow::Result<Sqlite> {
        Sqlite::open_as(dir, false)
    }

    fn open_as(dir: &Path, writable: bool) -> anyhow::Result<Sqlite> {
        let path = dir.join("qrouter.db");
        let mut store = Sqlite {
            conn: None,
            dir: dir.to_path_buf(),
            path,
            writable,
            id: String::new(),
            cached: None,
            keep_cache: false,
        };
        store.attach()?;
        Ok(store)
    }

    /// Connect to the store if it exists (now: another process may have made it since this
    /// one looked); whether it does.
    pub(super) fn attach(&mut self) -> anyhow::Result<bool> {
        if self.conn.is_none() && self.check_dir()? && self.check_file()? {
            self.connect()?;
        }
        Ok(self.conn.is_some())
    }

    /// The store's id, made with it and never changed: what marks an object as this store's.
    /// Empty while there is no store, and for a store older than ids that was opened
    /// read-only (its first write gives it one): nothing can be marked as such a store's.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An error naming the store unless it exists: for a command that must not run against
    /// an empty state made up for a missing store (`why`: "nothing to sync against").
    pub fn must_exist(&mut self, why: &str) -> anyhow::Result<()> {
        match self.attach()? {
            true => Ok(()),
            false => anyhow::bail!("store {}: no such store; {why}", self.path.display()),
        }
    }

    /// Whether the state directory exists; refuses one another user could change: it holds
    /// the store, and the -wal and -shm files SQLite creates beside it.
    fn check_dir(&self) -> anyhow::Result<bool> {
        let dir = self.dir.display();
        let meta = match std::fs::metadata(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("state directory {dir}")),
            Ok(meta) => meta,
        };
        if !meta.is_dir() {
            anyhow::bail!("state directory {dir}: not a directory");
        }
        trusted(&meta).with_context(|| format!("state directory {dir}: refusing to use it"))?;
        Ok(true)
    }

    /// Whether the store file exists; refuses a symbolic link (never followed: a planted one
    /// would make qrouter write where it points), a file another user could change, and an
    /// empty file (SQLite would take it for an empty database, and `sync` would then remove
    /// everything).
    fn check_file(&self) -> anyhow::Result<bool> {
        let path = self.path.display();
        let meta = match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("store {path}")),
            Ok(meta) => meta,
        };
        if meta.file_type().is_symlink() {
            anyhow::bail!("store {path}: a symbolic link; refusing to follow it");
        }
        if !meta.is_file() {
            anyhow::bail!("store {path}: not a regular file");
        }
        trusted(&meta).with_context(|| format!("store {path}: refusing to use it"))?;
        if meta.len() == 0 {
            anyhow::bail!("store {path}: an empty file, not a qrouter store");
        }
        Ok(true)
    }

    /// Open the existing store file, bring an older schema up to date (when writable) and
    /// read the store's id.
    fn connect(&mut self) -> anyhow::Result<()> {
        let opened = self.open_file(false).or_else(|err| {
            // A read-only connection to a WAL store must open or create the -wal and -shm
            // files. Measured (SQLite 3.46): on a read-only bind mount with no -wal (the
            // store at rest: the last connection to close removes it) the open fails with
            // "unable to open database file"; on a full tmpfs, with "disk I/O error ...
            // xShmMap" (it can create the -shm but not size it). Read `immutable` instead:
            // no -wal, no -shm, no locks. That reads the file alone, so only where no -wal
            // holds commits the file lacks; a concurrent writer on such a filesystem cannot
            // commit anyway.
            let unopenable = matches!(
                err.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure)
            );
            if self.writable || !unopenable || self.wal_holds_commits() {
                return Err(err);
            }
            self.open_file(true)
        });
        let (conn, version) = opened.map_err(|e| {
            let unopenable = matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure)
            );
            match self.writable && unopenable {
                true => self.failed(e, "cannot open it to write"),
                false => self.failed(e, "not a qrouter store, or unreadable"),
            }
        })?;
        let path = self.path.display();
        match version {
            SCHEMA_VERSION => {}
            // Stores from before the schema had a version have the objects table.
            0 if !has_objects(&conn).map_err(|e| self.failed(e, "cannot read it"))? => {
                anyhow::bail!("store {path}: not a qrouter store, or unreadable");
            }
            v if v > SCHEMA_VERSION => anyhow::bail!(
                "store {path}: made by a newer qrouter (schema {v}; this one knows {SCHEMA_VERSION})"
            ),
            _ if self.writable => conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|_| conn.execute_batch(&upgrade()))
                .map_err(|e| self.failed(e, "cannot bring it up to date"))?,
            // Read as it is: its first write adds the id.
            _ => {
                self.conn = Some(conn);
                return Ok(());
            }
        }
        if self.writable {
            // Every commit durable.
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        self.id = conn
            .query_row("SELECT value FROM meta WHERE key = 'id'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.failed(e, "cannot read its id"))?
            .with_context(|| format!("store {path}: it has no id; not a qrouter store"))?;
        self.conn = Some(conn);
        Ok(())
    }

    /// The store file and its schema version: the first read, where SQLite finds out
    /// whether it can read the file at all.
    fn open_file(&self, immutable: bool) -> rusqlite::Result<(Connection, i64)> {
        // NOFOLLOW: the file was checked not to be a symbolic link; SQLite refuses one planted
        // since, and opens the -wal and -shm files with O_NOFOLLOW itself. No CREATE: a
        // store is only made whole, by `create`.
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = if immutable {
            Connection::open_with_flags(
                format!("file:{}?immutable=1", uri_path(&self.path)),
                flags | OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            )?
        } else if self.writable {
            Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)?
        } else {
            Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_READ_ONLY)?
        };
        conn.busy_timeout(Duration::from_secs(60))?;
        let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
        Ok((conn, version))
    }

    /// Whether a -wal file with content is beside the store: commits may be in it alone.
    fn wal_holds_commits(&self) -> bool {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
    }

    /// Make the store, whole: built beside it under a name of this process's, then linked
    /// into place, so no other process ever sees it half made (an empty file is refused),
    /// and of two processes making it at once, one store wins and both use it.
    pub(super) fn create(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.display();
        if !self.check_dir()? {
            // Only a directory qrouter creates gets its mode set.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("state directory {dir}: cannot create it"))?;
            self.check_dir()?;
        }
        let new = self
            .dir
            .join(format!(".qrouter.db.new-{}", std::process::id()));
        let new_display = new.display().to_string();
        let _ = std::fs::remove_file(&new);
        let made = Connection::open_with_flags(
            &new,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .and_then(|conn| {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(&upgrade())?;
            // Closing the last connection checkpoints and removes the -wal and -shm.
            conn.close().map_err(|(_, e)| e)
        })
        .map_err(|e| {
            describe(
                e,
                &self.dir,
                format!("store {new_display}: cannot create it"),
            )
        })
        .and_then(|()| match std::fs::hard_link(&new, &self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("store {}: cannot create it", self.path.display()))
            }
            _ => Ok(()),
        });
        let _ = std::fs::remove_file(&new);
        made?;
        // The link, durable like the commits that follow it.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .ok();
        if !self.check_file()? {
            anyhow::bail!("store {}: removed as it was made", self.path.display());
        }
        self.connect()
    }

    /// An SQLite error as the operator reads it: the store's path, what failed, and why
    /// where the filesystem says (full, read-only).
    pub(super) fn failed(&self, err: rusqlite::Error, doing: &str) -> anyhow::Error {
        describe(
            err,
            &self.dir,
            format!("store {}: {doing}", self.path.display()),
        )
    }
}

/// Refuses what another user could change: it must be the invoking user's and writable by
/// no one else.
fn trusted(meta: &std::fs::Metadata) -> anyhow::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        anyhow::bail!("owned by uid {}, not by this user (uid {me})", meta.uid());
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// `path` for an SQLite URI: every byte but unreserved ones and `/` percent-encoded.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn has_objects(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'objects'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Brings a store of any older version, or a new empty database, to this version; a new
/// store gets its id here.
fn upgrade() -> String {
    let id = uuid::Uuid::new_v4();
    format!(
        "BEGIN IMMEDIATE; {SCHEMA}
         INSERT OR IGNORE INTO meta (key, value) VALUES ('id', '{id}');
         PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )
}

/// `context`, with the reason the filesystem gives for a failed write: SQLite reports a
/// read-only filesystem as "attempt to write a readonly database" or "unable to open
/// database file", and a full one as "disk I/O error" as often as "disk is full".
pub(super) fn describe(err: rusqlite::Error, dir: &Path, context: String) -> anyhow::Error {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let code = err.sqlite_error_code();
    let why = match code {
        Some(ErrorCode::DiskFull) => Some("no space left on device"),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure) => {
            match statvfs(dir) {
                Ok(fs) if fs.flags().contains(FsFlags::ST_RDONLY) => Some("read-only file system"),
                Ok(fs) if fs.blocks_available() == 0 => Some("no space left on device"),
                _ => None,
            }
        }
        _ => None,
    };
    let err = anyhow::Error::new(err);
    match why {
        Some(why) => err.context(format!("{context}: {why}")),
        None => err.context(context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Object, Router};
    use crate::store::sqlite::body;
    use crate::store::sqlite::tests::{add, router};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A fresh directory under the system's temporary one, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("qrouter-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn error(result: anyhow::Result<Sqlite>) -> String {
        format!("{:#}", result.err().expect("an error"))
    }

    #[test]
    fn a_missing_store_reads_as_empty_and_only_a_write_creates_it() {
        let tmp = TempDir::new("store-missing");
        let dir = tmp.0.join("state");
        let mut ro = Sqlite::open_read_only(&dir).unwrap();
        assert!(ro.load().unwrap().routers.is_empty());
        assert_eq!(ro.id_of(Router::KIND, "r1").unwrap(), None);
        assert_eq!(ro.id(), "");
        assert!(ro.begin().is_err());
        let mut rw = Sqlite::open(&dir).unwrap();
        assert!(rw.load().unwrap().routers.is_empty());
        let refused = rw.must_exist("nothing to sync against").unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "store {}/qrouter.db: no such store; nothing to sync against",
                dir.display()
            )
        );
        assert!(
            !dir.exists(),
            "opening and reading created {}",
            dir.display()
        );
        add(&mut rw, "r1");
        assert_eq!(dir.metadata().unwrap().mode() & 0o777, 0o700);
        rw.must_exist("nothing to sync against").unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.contains(&"qrouter.db".into()), "{names:?}");
        assert!(!names.iter().any(|n| n.to_string_lossy().contains(".new-")));
    }

    #[test]
    fn every_store_has_an_id_that_never_changes() {
        let tmp = TempDir::new("store-uuid");
        let mut store = Sqlite::open(&tmp.0).unwrap();
        assert_eq!(store.id(), "");
        add(&mut store, "r1");
        let id = store.id().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
        assert_eq!(Sqlite::open(&tmp.0).unwrap().id(), id);
        assert_eq!(Sqlite::open_read_only(&tmp.0).unwrap().id(), id);
        let other = TempDir::new("store-uuid-other");
        let mut second = Sqlite::open(&other.0).unwrap();
        add(&mut second, "r1");
        assert_ne!(second.id(), id);
    }

    #[test]
    fn an_older_store_gets_an_id_at_its_first_writable_open() {
        let tmp = TempDir::new("store-v2");
        let path = tmp.0.join("qrouter.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                                   UNIQUE (kind, id));
             PRAGMA user_version = 2;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO objects VALUES ('router', 'id-r1', ?1)",
            [body(router("r1").as_ref())],
        )
        .unwrap();
        drop(conn);
        // Read as it is, and left as it is.
        let mut ro = Sqlite::open_read_only(&tmp.0).unwrap();
        assert_eq!(ro.load().unwrap().routers, [router("r1")]);
        assert_eq!(ro.id(), "");
        drop(ro);
        let mut rw = Sqlite::open(&tmp.0).unwrap();
        let id = rw.id().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
        assert_eq!(rw.load().unwrap().routers, [router("r1")]);
        drop(rw);
        assert_eq!(Sqlite::open_read_only(&tmp.0).unwrap().id(), id);
    }

    #[test]
    fn an_empty_or_foreign_file_is_an_error_naming_it_never_an_empty_store() {
        let tmp = TempDir::new("store-empty");
        let path = tmp.0.join("qrouter.db");
        std::fs::write(&path, "").unwrap();
        for open in [Sqlite::open, Sqlite::open_read_only] {
            let msg = error(open(&tmp.0));
            assert!(msg.contains(&format!("store {}", path.display())), "{msg}");
            assert!(msg.contains("empty file"), "{msg}");
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // An SQLite database that is not a store is not made into one.
        std::fs::remove_file(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let msg = error(Sqlite::open(&tmp.0));
        assert!(msg.contains("not a qrouter store"), "{msg}");
    }

    #[test]
    fn a_malformed_store_is_named() {
        let tmp = TempDir::new("store-malformed");
        let mut store = Sqlite::open(&tmp.0).unwrap();
        for i in 0..200 {
            add(&mut store, &format!("router-with-a-long-name-{i:04}"));
        }
        drop(store);
        // Overwrite the pages after the first (the header stays valid).
        let path = tmp.0.join("qrouter.db");
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
        bytes[4096..].iter_mut().for_each(|b| *b = 0x5a);
        std::fs::write(&path, bytes).unwrap();
        let msg = match Sqlite::open_read_only(&tmp.0).and_then(|mut s| s.load()) {
            Ok(_) => panic!("a malformed store read"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            msg.contains(&format!("store {}", path.display())) && msg.contains("malformed"),
            "{msg}"
        );
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let tmp = TempDir::new("store-symlink");
        let target = tmp.0.join("elsewhere");
        let state = tmp.0.join("state");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state)
            .unwrap();
        std::os::unix::fs::symlink(&target, state.join("qrouter.db")).unwrap();
        for open in [Sqlite::open, Sqlite::open_read_only] {
            let msg = error(open(&state));
            assert!(
                msg.contains(&format!("store {}/qrouter.db", state.display()))
                    && msg.contains("symbolic link"),
                "{msg}"
            );
        }
        assert!(!target.exists(), "the symlink's target was created");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_and_left_as_it_is() {
        let tmp = TempDir::new("store-mode");
        std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let msg = error(Sqlite::open(&tmp.0));
        assert!(
            msg.contains(&format!("state directory {}", tmp.0.display()))
                && msg.contains("writable by group or others"),
            "{msg}"
        );
        assert_eq!(tmp.0.metadata().unwrap().mode() & 0o7777, 0o1777);
        // A store file others can write is refused too.
        std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut store = Sqlite::open(&tmp.0).unwrap();
        add(&mut store, "r1");
        drop(store);
        let path = tmp.0.join("qrouter.db");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let msg = error(Sqlite::open_read_only(&tmp.0));
        assert!(msg.contains(&format!("store {}", path.display())), "{msg}");
        // Owned by another user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let msg = error(Sqlite::open(&tmp.0));
            assert!(msg.contains("owned by uid 65534"), "{msg}");
        }
    }

    #[test]
    fn a_uri_path_keeps_what_sqlite_would_read_as_a_query() {
        assert_eq!(
            uri_path(Path::new("/run/a b/q?x=1#%.db")),
            "/run/a%20b/q%3Fx%3D1%23%25.db"
        );
    }
}
