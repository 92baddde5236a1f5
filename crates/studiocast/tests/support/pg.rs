//! A throwaway PostgreSQL server for one test: `initdb` and `pg_ctl` from
//! Debian's `postgresql` package, in a folder of the test's, on a free
//! port of 127.0.0.1, stopped (immediately) when dropped. As root (CI),
//! the server runs as the `postgres` user, since it refuses root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub url: String,
    data: PathBuf,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .expect("PostgreSQL is not installed (scripts/setup.sh installs it)")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    versions.sort();
    root.join(versions.last().expect("no PostgreSQL version").to_string())
        .join("bin")
}

fn as_server(bin: &Path, tool: &str) -> Command {
    if rustix::process::getuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        let bin = bin_dir();
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        if rustix::process::getuid().is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = as_server(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "studiocast", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            data.display()
        );
        let out = as_server(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(data.join("server.log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(data.join("server.log")).unwrap_or_default()
        );
        Postgres {
            url: format!("postgres://studiocast@127.0.0.1:{port}/postgres"),
            data,
            bin,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_server(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
