//! The synthetic scene of the bundled clip, and its ground truth.
//!
//! Three shapes with a random two-tone texture (so their inside changes as
//! they move, like real objects) circle on fixed elliptic paths over a static,
//! textured gradient background, and a 3×3-pixel "fly" buzzes between them.
//! Every path closes after [`FRAMES`] frames, so the clip loops without a
//! jump. The paths are far enough apart that the motion of different shapes
//! never merges: frame-difference detection must find exactly
//! [`MOVERS`]`.len()` moving objects in every frame and ignore the fly as a
//! tiny blob. `examples/make_clip.rs` renders these frames into
//! `assets/clip/`; the tests compare what `video` detects with
//! [`Mover::bbox`].

use image::{Rgb, RgbImage};

/// Frame width of the clip, pixels.
pub const WIDTH: u32 = 320;
/// Frame height of the clip, pixels.
pub const HEIGHT: u32 = 240;
/// Frames in one loop of the clip.
pub const FRAMES: usize = 36;
/// JPEG quality the clip is encoded with.
pub const JPEG_QUALITY: u8 = 85;
/// Side of the texture cells of each shape, pixels.
const CELL: f32 = 4.0;

/// The outline of a moving shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Disc { r: f32 },
    Rect { w: f32, h: f32 },
}

/// A shape moving on an ellipse: `turns` loops per clip (negative =
/// clockwise), starting at angle `phase`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mover {
    pub name: &'static str,
    pub shape: Shape,
    /// The dark and the bright colour of its texture.
    pub colors: [[u8; 3]; 2],
    pub center: (f32, f32),
    pub radii: (f32, f32),
    pub turns: i32,
    pub phase: f32,
}

/// The moving objects the detector must find.
pub const MOVERS: [Mover; 3] = [
    Mover {
        name: "dark disc",
        shape: Shape::Disc { r: 16.0 },
        colors: [[15, 15, 15], [255, 200, 200]],
        center: (70.0, 72.0),
        radii: (36.0, 36.0),
        turns: 1,
        phase: 0.0,
    },
    Mover {
        name: "yellow bar",
        shape: Shape::Rect { w: 30.0, h: 18.0 },
        colors: [[10, 10, 80], [250, 220, 40]],
        center: (240.0, 70.0),
        radii: (42.0, 34.0),
        turns: -2,
        phase: 1.0,
    },
    Mover {
        name: "cyan block",
        shape: Shape::Rect { w: 24.0, h: 24.0 },
        colors: [[60, 0, 40], [40, 230, 230]],
        center: (160.0, 182.0),
        radii: (96.0, 24.0),
        turns: 1,
        phase: std::f32::consts::PI,
    },
];

/// A 3×3-pixel speck that moves too: motion the detector must ignore as a
/// tiny blob.
pub const FLY: Mover = Mover {
    name: "fly",
    shape: Shape::Rect { w: 3.0, h: 3.0 },
    colors: [[0, 0, 0], [0, 0, 0]],
    center: (152.0, 40.0),
    radii: (10.0, 8.0),
    turns: 3,
    phase: 0.5,
};

impl Mover {
    /// Centre of the shape in frame `t` (any `t`; the path repeats every
    /// [`FRAMES`]).
    pub fn position(&self, t: usize) -> (f32, f32) {
        let t = (t % FRAMES) as f32;
        let a = self.phase + std::f32::consts::TAU * self.turns as f32 * t / FRAMES as f32;
        (
            self.center.0 + self.radii.0 * a.cos(),
            self.center.1 + self.radii.1 * a.sin(),
        )
    }

    /// The shape's colour at pixel `(x, y)` of frame `t`, if it covers it
    /// (sampled at the pixel centre).
    pub fn color_at(&self, t: usize, x: u32, y: u32) -> Option<[u8; 3]> {
        let (cx, cy) = self.position(t);
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let inside = match self.shape {
            Shape::Disc { r } => dx * dx + dy * dy <= r * r,
            Shape::Rect { w, h } => dx.abs() <= w / 2.0 && dy.abs() <= h / 2.0,
        };
        inside.then(|| {
            let cell = ((dx / CELL).floor() as i32, (dy / CELL).floor() as i32);
            self.colors[texture_bit(cell)]
        })
    }

    /// The pixels the shape covers in frame `t`, as `[x, y, w, h]`.
    pub fn bbox(&self, t: usize) -> [u32; 4] {
        let (cx, cy) = self.position(t);
        let (hw, hh) = match self.shape {
            Shape::Disc { r } => (r, r),
            Shape::Rect { w, h } => (w / 2.0, h / 2.0),
        };
        let x_range = (cx - hw - 1.0).max(0.0) as u32..((cx + hw + 1.0) as u32).min(WIDTH);
        let y_range = (cy - hh - 1.0).max(0.0) as u32..((cy + hh + 1.0) as u32).min(HEIGHT);
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        for y in y_range {
            for x in x_range.clone() {
                if self.color_at(t, x, y).is_some() {
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
            }
        }
        [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
    }
}

/// A fixed pseudo-random bit per texture cell (a SplitMix64 hash of its
/// coordinates): a texture without a period, so any move changes the inside.
fn texture_bit((cx, cy): (i32, i32)) -> usize {
    let mut z = (cx as u32 as u64) << 32 | cy as u32 as u64;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) & 1) as usize
}

/// The static background: a colour gradient with a soft ripple texture and
/// a few darker blocks, all within a narrow band of brightness so every
/// shape stands out from it in grayscale.
pub fn background(x: u32, y: u32) -> [u8; 3] {
    let (fx, fy) = (x as f32, y as f32);
    let ripple = 7.0 * (fx * 0.21).sin() * (fy * 0.17).cos() + 4.0 * ((fx + fy) * 0.05).sin();
    let block = if (x / 40 + y / 60) % 3 == 0 {
        -8.0
    } else {
        0.0
    };
    let r = 70.0 + 40.0 * fx / WIDTH as f32 + ripple + block;
    let g = 95.0 + 20.0 * fy / HEIGHT as f32 + ripple + block;
    let b = 120.0 - 30.0 * fy / HEIGHT as f32 - ripple;
    [r as u8, g as u8, b as u8]
}

/// Renders frame `t` of the clip.
pub fn render(t: usize) -> RgbImage {
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let c = MOVERS
            .iter()
            .chain(std::iter::once(&FLY))
            .find_map(|m| m.color_at(t, x, y))
            .unwrap_or_else(|| background(x, y));
        Rgb(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(a: [u32; 4], b: [u32; 4]) -> u32 {
        let dx = (b[0].saturating_sub(a[0] + a[2])).max(a[0].saturating_sub(b[0] + b[2]));
        let dy = (b[1].saturating_sub(a[1] + a[3])).max(a[1].saturating_sub(b[1] + b[3]));
        dx.max(dy)
    }

    #[test]
    fn shapes_stay_inside_the_frame_and_far_apart() {
        let all: Vec<Mover> = MOVERS.iter().copied().chain([FLY]).collect();
        for t in 0..FRAMES {
            for (i, a) in all.iter().enumerate() {
                let ba = a.bbox(t);
                assert!(ba[0] > 0 && ba[1] > 0, "{} leaves the frame at {t}", a.name);
                assert!(
                    ba[0] + ba[2] < WIDTH && ba[1] + ba[3] < HEIGHT,
                    "{}",
                    a.name
                );
                for b in &all[i + 1..] {
                    assert!(
                        gap(ba, b.bbox(t)) >= 18,
                        "{} and {} come within 18 px at frame {t}",
                        a.name,
                        b.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_shape_moves_every_frame_and_the_loop_closes() {
        for m in MOVERS.iter().chain([&FLY]) {
            for t in 0..FRAMES {
                let (a, b) = (m.position(t), m.position(t + 1));
                let d = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                assert!(d > 2.0, "{} moves only {d} px at frame {t}", m.name);
            }
            assert_eq!(m.position(0), m.position(FRAMES));
        }
    }

    #[test]
    fn shapes_contrast_with_the_background_in_grayscale() {
        let luma = |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
        let bg: Vec<f32> = (0..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| luma(background(x, y))))
            .collect();
        let (lo, hi) = bg
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        for m in MOVERS.iter().chain([&FLY]) {
            for c in m.colors {
                let l = luma(c);
                assert!(
                    l < lo - 40.0 || l > hi + 40.0,
                    "{} colour {c:?} ({l}) vs bg {lo}..{hi}",
                    m.name
                );
            }
        }
    }
}
