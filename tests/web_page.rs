//! The status page in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol): nodes appear, progress reaches 100 % live (no reloads), hostile names stay text,
//! no script errors, and screenshots land in `target/` for a human to look at.
//!
//! Skipped with a printed reason when Chromium is absent, unless `CI` is set (CI installs it).

mod web_common;

use std::time::Duration;

use lanscatter::status::{NodeState, CELL_HAS};
use lanscatter::web::master_router;
use tokio::sync::watch;
use web_common::*;

fn chromium_or_skip(test: &str) -> Option<std::path::PathBuf> {
    match chromium_path() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!("{test}: chromium is required in CI (.ci/run installs it)"),
        None => {
            eprintln!("SKIPPED {test}: no chromium on PATH (apt-get install chromium, or set CHROMIUM=/path)");
            None
        }
    }
}

/// JS: every `[data-node]` row as `[name, progress text]`.
const ROWS: &str = "JSON.stringify([...document.querySelectorAll('#nodes [data-node]')].map(r => [r.querySelector('.n-name span').textContent, r.querySelector('.n-progress').textContent]))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_renders_a_live_hand_built_swarm() {
    let Some(chromium) = chromium_or_skip("page_renders_a_live_hand_built_swarm") else { return };
    let chunks = 2000;
    let snap = sample_master_snapshot(40, chunks);
    let (tx, rx) = watch::channel(snap.clone());
    let addr = serve(master_router(rx)).await;
    let mut b = Browser::launch(&chromium).await;
    b.emulate(1280, 900, false, false).await;
    b.navigate(&format!("http://{addr}/")).await;
    wait_page(&mut b, "document.querySelectorAll('#nodes [data-node]').length === 41", Duration::from_secs(30)).await;

    // The hostile name is shown as text, not parsed as markup.
    let evil = b.eval("document.querySelector('[data-node=\"2\"] .n-name span').textContent").await;
    assert_eq!(evil.as_str().unwrap(), snap.nodes[2].name);
    assert_eq!(b.eval("document.querySelectorAll('#nodes b.evil, #events i').length").await, 0);

    // Drive everyone to 100 % through the live stream.
    let driver = tokio::spawn(async move {
        for step in 0..=20u64 {
            tx.send_modify(|s| {
                s.time += 1.0;
                let mut done = 0;
                for n in s.nodes.iter_mut().filter(|n| !n.is_master) {
                    for (k, c) in n.chunk_map.iter_mut().enumerate() {
                        if (k as u64 * 31 + n.id as u64) % 20 < step {
                            *c = CELL_HAS;
                        }
                    }
                    let has = n.chunk_map.iter().filter(|&&c| c == CELL_HAS).count() as u64;
                    n.bytes_done = has * (n.bytes_total / n.chunk_map.len() as u64);
                    if n.bytes_done == n.bytes_total {
                        n.state = NodeState::UpToDate;
                        n.download_bps = 0.0;
                    }
                    done += n.bytes_done;
                }
                s.bytes_done = done;
                s.download_bps = 400e6 * (1.0 - step as f64 / 20.0);
            });
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tx
    });
    let js = format!("(() => {{ const r = {ROWS}; const v = JSON.parse(r); return v.length === 41 && v.every(x => x[1] === '100%'); }})()");
    wait_page(&mut b, &js, Duration::from_secs(60)).await;
    let _tx = driver.await.unwrap();
    assert_eq!(b.eval("document.getElementById('t-progress').textContent").await, "100%");

    let dir = target_dir();
    b.screenshot(&dir.join("status-page-handbuilt.png"), false).await;
    b.emulate(390, 844, true, true).await;
    // Let a frame render at the new size before capturing.
    b.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))").await;
    b.screenshot(&dir.join("status-page-handbuilt-phone-dark.png"), false).await;
    let overflow = b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1").await;
    assert_eq!(overflow, true, "no horizontal scrolling at phone width");
    assert!(b.exceptions.is_empty(), "script errors: {:?}", b.exceptions);
    b.close().await;
}
