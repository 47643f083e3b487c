//! The bundled clip: the JPEG frames `examples/make_clip.rs` rendered from
//! [`super::scene`] into `assets/clip/`, embedded in the binary so `video`
//! works from any working directory.
//!
//! Regenerate with `cargo run -p slokit-functions --example make_clip` (the
//! files are committed; a changed scene needs a re-run and a commit).

macro_rules! frames {
    ($($n:literal),* $(,)?) => {
        [$(include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/clip/frame_", $n, ".jpg")).as_slice()),*]
    };
}

/// The JPEG-encoded frames of the clip, in order.
pub static FRAMES: [&[u8]; super::scene::FRAMES] = frames!(
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15",
    "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    "32", "33", "34", "35"
);

/// File name of frame `i` under `assets/clip/`.
pub fn file_name(i: usize) -> String {
    format!("frame_{i:02}.jpg")
}
