//! The embedded tray icons (`assets/tray-*.png`, made by `assets/make-icons.sh`), decoded once.
//!
//! PNG keeps the repository and binary small; decoding 12 tiny images at start-up is negligible.
//! The icons are embedded with `include_bytes!` so the installed binary needs no asset files.

use tray_icon::Icon;

use super::view::IconKind;

const IDLE: &[u8] = include_bytes!("../../assets/tray-idle.png");
const UPTODATE: &[u8] = include_bytes!("../../assets/tray-uptodate.png");
const ERROR: &[u8] = include_bytes!("../../assets/tray-error.png");
const SYNCING: [&[u8]; 9] = [
    include_bytes!("../../assets/tray-syncing-0.png"),
    include_bytes!("../../assets/tray-syncing-1.png"),
    include_bytes!("../../assets/tray-syncing-2.png"),
    include_bytes!("../../assets/tray-syncing-3.png"),
    include_bytes!("../../assets/tray-syncing-4.png"),
    include_bytes!("../../assets/tray-syncing-5.png"),
    include_bytes!("../../assets/tray-syncing-6.png"),
    include_bytes!("../../assets/tray-syncing-7.png"),
    include_bytes!("../../assets/tray-syncing-8.png"),
];

/// Decoded RGBA pixels of one icon.
#[derive(Clone)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

pub fn decode(png_bytes: &[u8]) -> Result<Rgba, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("icon too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(format!("icon is {:?}/{:?}, expected 8-bit RGBA", info.color_type, info.bit_depth));
    }
    buf.truncate(info.buffer_size());
    Ok(Rgba { width: info.width, height: info.height, pixels: buf })
}

#[cfg(test)]
fn bytes_for(kind: IconKind) -> &'static [u8] {
    match kind {
        IconKind::Idle => IDLE,
        IconKind::UpToDate => UPTODATE,
        IconKind::Error => ERROR,
        IconKind::Syncing(k) => SYNCING[usize::from(k.min(8))],
    }
}

/// All icons, decoded up front so a broken asset fails at start-up, not mid-sync.
pub struct Icons {
    idle: Rgba,
    uptodate: Rgba,
    error: Rgba,
    syncing: Vec<Rgba>,
}

impl Icons {
    pub fn load() -> Result<Icons, String> {
        Ok(Icons {
            idle: decode(IDLE)?,
            uptodate: decode(UPTODATE)?,
            error: decode(ERROR)?,
            syncing: SYNCING.iter().map(|b| decode(b)).collect::<Result<_, _>>()?,
        })
    }

    pub fn get(&self, kind: IconKind) -> Result<Icon, String> {
        let r = match kind {
            IconKind::Idle => &self.idle,
            IconKind::UpToDate => &self.uptodate,
            IconKind::Error => &self.error,
            IconKind::Syncing(k) => &self.syncing[usize::from(k.min(8))],
        };
        Icon::from_rgba(r.pixels.clone(), r.width, r.height).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_icons_decode_to_64px_rgba_with_transparent_corners() {
        let kinds =
            [IconKind::Idle, IconKind::UpToDate, IconKind::Error].into_iter().chain((0..=8).map(IconKind::Syncing));
        for kind in kinds {
            let r = decode(bytes_for(kind)).unwrap();
            assert_eq!((r.width, r.height, r.pixels.len()), (64, 64, 64 * 64 * 4), "{kind:?}");
            assert_eq!(r.pixels[3], 0, "{kind:?}: corner should be transparent (rounded)");
            assert_eq!(r.pixels[(32 * 64 + 32) * 4 + 3], 255, "{kind:?}: centre opaque");
        }
        assert!(Icons::load().is_ok());
    }
}
