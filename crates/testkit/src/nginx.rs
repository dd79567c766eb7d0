//! A real nginx (Debian's package) serving a directory as a Steward hub, for the fleet process
//! test and `cargo xtask bench fleet`: on a free loopback port, TLS with a fresh self-signed
//! certificate, a bearer-token check, `etag on`, optionally client certificates checked against
//! a CA (`ssl_verify_client`). Everything it writes stays in its directory. It must never be
//! left running: dropping it stops the master and waits for it (the workers go with it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How nginx serves.
#[derive(Clone, Debug, Default)]
pub struct NginxOptions {
    /// The bearer token every `/v1/` request must carry.
    pub token: String,
    /// A CA file: ask for a client certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// Worker processes (default 1).
    pub workers: u32,
    /// Write an access log (a benchmark may not want one).
    pub access_log: bool,
}

/// A running nginx; stopped and reaped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its certificate, DER (pin its SHA-256).
    pub cert_der: Vec<u8>,
}

/// Where the nginx binary is.
pub fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Nginx {
    /// Starts nginx in `dir` (its configuration, logs, pid and temporary files) serving `root`.
    pub fn start(dir: &Path, root: &Path, opts: &NginxOptions) -> Result<Nginx, String> {
        let e = |what: &str, err: &dyn std::fmt::Display| format!("{what}: {err}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .map_err(|x| e("certificate", &x))?;
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).map_err(|x| e("cert.pem", &x))?;
        std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem())
            .map_err(|x| e("key.pem", &x))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|x| e("a free port", &x))?
            .port();
        std::fs::create_dir_all(dir.join("tmp")).map_err(|x| e("tmp", &x))?;
        let d = dir.display();
        // As root the workers would drop to an unprivileged user that cannot read a private
        // temporary directory: keep them as the master's user.
        let user = if is_root() { "user root;\n" } else { "" };
        let access = if opts.access_log {
            format!("access_log {d}/access.log;")
        } else {
            "access_log off;".into()
        };
        let client = match &opts.client_ca {
            Some(ca) => format!(
                "ssl_client_certificate {};\n    ssl_verify_client on;\n",
                ca.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            "{user}worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  {access}\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  default_type application/json;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n    {client}    root {root};\n    etag on;\n\
                 location /v1/ {{\n      if ($http_authorization != \"Bearer {token}\") {{ return 401; }}\n      try_files $uri =404;\n    }}\n  }}\n}}\n",
            workers = opts.workers.max(1),
            root = root.display(),
            token = opts.token,
        );
        std::fs::write(dir.join("nginx.conf"), conf).map_err(|x| e("nginx.conf", &x))?;
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|x| {
                e(
                    "nginx (Debian's nginx-core package; .ci/run installs it)",
                    &x,
                )
            })?;
        let n = Nginx {
            child,
            dir: dir.to_path_buf(),
            port,
            cert_der: cert.cert.der().to_vec(),
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "nginx did not listen: {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    }

    /// Lines of the access log for `method path` answered `status`.
    pub fn served(&self, method: &str, path: &str, status: u16) -> usize {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let want = format!("\"{method} {path} HTTP/1.1\" {status} ");
        log.lines().filter(|l| l.contains(&want)).count()
    }

    /// The master's and its workers' process ids (from `/proc`).
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut out = vec![master];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(master) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A quick shutdown takes the workers with the master; then make sure of the master.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
