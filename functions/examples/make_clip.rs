//! Renders the bundled `video` clip: the frames of
//! `slokit_functions::video::scene` as JPEGs under `functions/assets/clip/`.
//!
//! ```text
//! cargo run -p slokit-functions --example make_clip
//! ```
//!
//! The output is committed and embedded by `video::clip`; re-run and commit
//! after changing the scene.

use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use slokit_functions::video::{clip, scene};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/clip");
    std::fs::create_dir_all(&dir)?;
    let mut total = 0;
    for t in 0..scene::FRAMES {
        let frame = scene::render(t);
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, scene::JPEG_QUALITY).encode_image(&frame)?;
        std::fs::write(dir.join(clip::file_name(t)), &jpeg)?;
        total += jpeg.len();
    }
    println!(
        "wrote {} frames of {}x{} ({total} bytes) to {}",
        scene::FRAMES,
        scene::WIDTH,
        scene::HEIGHT,
        dir.display()
    );
    Ok(())
}
