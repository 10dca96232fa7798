//! A Linux desktop for the tray tests: Xvfb, an XEmbed tray host (trayer), a private D-Bus
//! session with a notification recorder, xdotool, screenshots, and the app's `--json` lines.
//!
//! Everything started here is a [`Reaper`]: killed and reaped when the test ends or fails, so a
//! failing run leaves no X server behind. Every wait has a deadline, so a hung app fails the test
//! instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Proc;

/// Kills the child (and reaps it) when dropped.
pub struct Reaper(pub Child, pub &'static str);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            eprintln!("desktop: stopping {}", self.1);
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

/// Poll `cond` every 50 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start Xvfb (`WxHx24`) on the first free display number; returns (guard, ":N").
pub fn start_xvfb(size: &str) -> (Reaper, String) {
    for n in 90..190 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            continue;
        }
        let child = Command::new("Xvfb")
            .args([&format!(":{n}"), "-screen", "0", &format!("{size}x24"), "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn Xvfb");
        let mut guard = Reaper(child, "Xvfb");
        let sock = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if sock.exists() {
                return (guard, format!(":{n}"));
            }
            if let Ok(Some(_)) = guard.0.try_wait() {
                break; // lost a race for this display number; try the next
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("could not start Xvfb on any display :90..:190");
}

/// trayer docked at the top left: the XEmbed tray libayatana-appindicator falls back to. Left,
/// because GTK places a fallback menu that grew since its last popup (a master's join code and
/// status line) with its old width, so at the right edge its end is off the screen.
pub fn start_trayer(display: &str) -> Reaper {
    let child = Command::new("trayer")
        .args(["--edge", "top", "--align", "left", "--widthtype", "request", "--height", "48"])
        .args(["--SetDockType", "true", "--transparent", "false", "--tint", "0xffffff"])
        .env("DISPLAY", display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn trayer");
    Reaper(child, "trayer")
}

/// Where screenshots go: the target dir of this crate.
pub fn shot_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

/// `import -window root` of the whole screen into `path`; true if it worked.
pub fn screenshot(display: &str, path: &Path) -> bool {
    Command::new("timeout")
        .args(["20", "import", "-window", "root"])
        .arg(path)
        .env("DISPLAY", display)
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `xdotool args…` on `display` (bounded by `timeout 20`); its stdout, or None on failure.
pub fn xdotool(display: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("timeout")
        .args(["20", "xdotool"])
        .args(args)
        .env("DISPLAY", display)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The centre on the screen of the app's icon docked in the tray, once it is mapped.
///
/// libayatana-appindicator, with no StatusNotifierWatcher on the session bus, falls back to an
/// XEmbed `GtkStatusIcon` about 100 ms after the app created it; trayer then embeds it. Until then
/// a click on the tray hits nothing, so the tests wait for this window before they click. Its
/// WM_CLASS is the indicator id tray-icon gives it ("tray-icon tray app <pid>-<n>").
pub fn docked_icon(display: &str, timeout: Duration) -> (i64, i64) {
    let mut found = None;
    wait_until("the tray icon docked in trayer", timeout, || {
        let ids = xdotool(display, &["search", "--onlyvisible", "--class", "^tray-icon tray app"]).unwrap_or_default();
        found = ids.lines().find_map(|id| {
            let geo = xdotool(display, &["getwindowgeometry", "--shell", id])?;
            let val = |k: &str| -> Option<i64> {
                geo.lines().find_map(|l| l.strip_prefix(&format!("{k}=")).and_then(|v| v.parse().ok()))
            };
            let (w, h) = (val("WIDTH")?, val("HEIGHT")?);
            // A 1x1 window is the icon before trayer has sized it.
            if w <= 1 || h <= 1 {
                return None;
            }
            Some((val("X")? + w / 2, val("Y")? + h / 2))
        });
        found.is_some()
    });
    found.expect("found above")
}

/// The next JSON line from the gui for which `pred` holds; an error line fails the test.
pub fn next(gui: &mut Proc, what: &str, timeout: Duration, pred: &dyn Fn(&Value) -> bool) -> Value {
    let line = gui.wait_for(what, timeout, |l| match serde_json::from_str::<Value>(l) {
        Ok(v) if pred(&v) => true,
        Ok(v) if v["type"] == "error" => panic!("gui reported an error while waiting for {what}: {v}"),
        _ => false,
    });
    serde_json::from_str(&line).expect("a JSON line")
}

/// NodeState as JSON may be a bare string or an object tagged by "state".
pub fn state_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("state")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| o.keys().next().cloned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Pixels of the PNG within `tol` (per channel) of `rgb`.
pub fn count_near(png_path: &Path, rgb: [u8; 3], tol: i32) -> usize {
    let Ok(bytes) = std::fs::read(png_path) else { return 0 };
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let Ok(mut reader) = dec.read_info() else { return 0 };
    let Some(size) = reader.output_buffer_size() else { return 0 };
    let mut buf = vec![0; size];
    let Ok(info) = reader.next_frame(&mut buf) else { return 0 };
    let channels = info.color_type.samples();
    if channels < 3 {
        return 0;
    }
    buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| (0..3).all(|i| (i32::from(p[i]) - i32::from(rgb[i])).abs() <= tol))
        .count()
}

/// The recorder: owns `org.freedesktop.Notifications` on the session bus and appends one JSON
/// line (`{"app", "summary", "body", "urgency"}`) per notification to the file in argv[1].
const RECORDER: &str = r#"
import json, sys
import dbus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib

class Recorder(dbus.service.Object):
    def __init__(self, bus, out):
        super().__init__(bus, "/org/freedesktop/Notifications")
        self.out, self.next = out, 1

    @dbus.service.method("org.freedesktop.Notifications", in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        urgency = int(hints.get("urgency", 1))
        with open(self.out, "a") as f:
            f.write(json.dumps({"app": str(app), "summary": str(summary), "body": str(body), "urgency": urgency}) + "\n")
        self.next += 1
        return self.next - 1

    @dbus.service.method("org.freedesktop.Notifications", in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["body"]

    @dbus.service.method("org.freedesktop.Notifications", in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("lanscatter-test-recorder", "lanscatter", "1", "1.2")

    @dbus.service.method("org.freedesktop.Notifications", in_signature="u", out_signature="")
    def CloseNotification(self, id):
        pass

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
name = dbus.service.BusName("org.freedesktop.Notifications", bus)
Recorder(bus, sys.argv[1])
open(sys.argv[1] + ".ready", "w").close()
GLib.MainLoop().run()
"#;

/// A private D-Bus session bus and a notification recorder on it.
pub struct Notifications {
    /// `DBUS_SESSION_BUS_ADDRESS` for the app under test.
    pub address: String,
    pub log: PathBuf,
    _recorder: Reaper,
    _bus: Reaper,
}

impl Notifications {
    /// Needs `dbus-daemon` and `/usr/bin/python3` with python3-dbus and python3-gi.
    pub fn start(dir: &Path) -> Notifications {
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon");
        let mut first = String::new();
        let stdout = bus.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).expect("bus address");
        let bus = Reaper(bus, "dbus-daemon");
        let address = first.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        let script = dir.join("notify_recorder.py");
        std::fs::write(&script, RECORDER).unwrap();
        let log = dir.join("notifications.jsonl");
        let recorder = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&log)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the notification recorder");
        let mut recorder = Reaper(recorder, "notification recorder");
        let ready = PathBuf::from(format!("{}.ready", log.display()));
        wait_until("the notification recorder on D-Bus", Duration::from_secs(30), || {
            assert!(matches!(recorder.0.try_wait(), Ok(None)), "the notification recorder exited");
            ready.exists()
        });
        Notifications { address, log, _recorder: recorder, _bus: bus }
    }

    /// Notifications recorded so far.
    pub fn seen(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}
