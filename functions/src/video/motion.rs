//! The image-processing steps of `video` that the `image` crate does not
//! provide: a box blur, frame differencing with a threshold, a binary
//! dilation and connected-component labelling.
//!
//! These are the classic steps of frame-difference motion detection (as in
//! OpenCV's `absdiff` → `threshold` → `dilate` → `findContours` recipe).
//! They are small and hand-written here: the box blur and the dilation are
//! separable sliding-window sums (O(1) per pixel whatever the radius), and the
//! labelling is the two-pass union-find algorithm (Rosenfeld and Pfaltz 1966;
//! Wu, Otoo and Suzuki 2005) with 8-connectivity.

use image::GrayImage;

/// Box blur of radius `r` (a (2r+1)² mean filter), edges replicated.
pub fn box_blur(img: &GrayImage, r: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    if r == 0 || w == 0 || h == 0 {
        return img.clone();
    }
    let (w, h, r) = (w as usize, h as usize, r as usize);
    let src = img.as_raw();
    let mut tmp = vec![0u8; w * h];
    for y in 0..h {
        blur_line(&src[y * w..(y + 1) * w], 1, &mut tmp[y * w..], 1, w, r);
    }
    let mut out = vec![0u8; w * h];
    for x in 0..w {
        blur_line(&tmp[x..], w, &mut out[x..], w, h, r);
    }
    GrayImage::from_raw(w as u32, h as u32, out).expect("buffer has w*h bytes")
}

/// One line of a box blur: `n` samples `stride` apart.
fn blur_line(src: &[u8], stride: usize, dst: &mut [u8], dstride: usize, n: usize, r: usize) {
    let at = |i: isize| -> u32 { u32::from(src[(i.clamp(0, n as isize - 1) as usize) * stride]) };
    let width = (2 * r + 1) as u32;
    let mut sum: u32 = (-(r as isize)..=r as isize).map(at).sum();
    for i in 0..n {
        dst[i * dstride] = ((sum + width / 2) / width) as u8;
        sum += at(i as isize + r as isize + 1);
        sum -= at(i as isize - r as isize);
    }
}

/// Marks pixels whose values differ by more than `threshold`; returns the
/// mask (1 = changed) and the number of changed pixels.
pub fn difference_mask(a: &GrayImage, b: &GrayImage, threshold: u8) -> (Vec<u8>, u64) {
    assert_eq!(a.dimensions(), b.dimensions(), "frames differ in size");
    let mut changed = 0u64;
    let mask = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&p, &q)| {
            let m = u8::from(p.abs_diff(q) > threshold);
            changed += u64::from(m);
            m
        })
        .collect();
    (mask, changed)
}

/// Binary dilation of a `w`×`h` 0/1 mask by a (2r+1)² square.
pub fn dilate(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    assert_eq!(mask.len(), w * h);
    if r == 0 {
        return mask.to_vec();
    }
    let mut tmp = vec![0u8; w * h];
    for y in 0..h {
        dilate_line(&mask[y * w..], 1, &mut tmp[y * w..], 1, w, r);
    }
    let mut out = vec![0u8; w * h];
    for x in 0..w {
        dilate_line(&tmp[x..], w, &mut out[x..], w, h, r);
    }
    out
}

fn dilate_line(src: &[u8], stride: usize, dst: &mut [u8], dstride: usize, n: usize, r: usize) {
    // Count of set samples in the window [i - r, i + r].
    let mut count: usize = (0..=r.min(n - 1))
        .map(|i| usize::from(src[i * stride]))
        .sum();
    for i in 0..n {
        dst[i * dstride] = u8::from(count > 0);
        if i + r + 1 < n {
            count += usize::from(src[(i + r + 1) * stride]);
        }
        if i >= r {
            count -= usize::from(src[(i - r) * stride]);
        }
    }
}

/// One connected region of a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Number of pixels in the region.
    pub area: u32,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        // Path halving.
        parent[i as usize] = parent[parent[i as usize] as usize];
        i = parent[i as usize];
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[hi as usize] = lo;
    lo
}

/// The 8-connected components of a `w`×`h` 0/1 mask, ordered by their
/// top-left-most pixel (raster order of first appearance).
pub fn components(mask: &[u8], w: usize, h: usize) -> Vec<Component> {
    assert_eq!(mask.len(), w * h);
    // Pass 1: provisional labels (0 = background), equivalences in `parent`.
    let mut labels = vec![0u32; w * h];
    let mut parent: Vec<u32> = vec![0];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if mask[i] == 0 {
                continue;
            }
            let mut label = 0u32;
            let mut neighbours = [0u32; 4];
            if x > 0 {
                neighbours[0] = labels[i - 1];
            }
            if y > 0 {
                let up = i - w;
                neighbours[1] = labels[up];
                if x > 0 {
                    neighbours[2] = labels[up - 1];
                }
                if x + 1 < w {
                    neighbours[3] = labels[up + 1];
                }
            }
            for n in neighbours.into_iter().filter(|&n| n != 0) {
                label = if label == 0 {
                    n
                } else {
                    union(&mut parent, label, n)
                };
            }
            if label == 0 {
                label = parent.len() as u32;
                parent.push(label);
            }
            labels[i] = label;
        }
    }
    // Pass 2: resolve roots and gather boxes, in order of first appearance.
    let mut slot = vec![u32::MAX; parent.len()];
    let mut boxes: Vec<(u32, u32, u32, u32, u32)> = Vec::new(); // x0, y0, x1, y1, area
    for y in 0..h {
        for x in 0..w {
            let l = labels[y * w + x];
            if l == 0 {
                continue;
            }
            let root = find(&mut parent, l) as usize;
            let (x, y) = (x as u32, y as u32);
            if slot[root] == u32::MAX {
                slot[root] = boxes.len() as u32;
                boxes.push((x, y, x, y, 0));
            }
            let b = &mut boxes[slot[root] as usize];
            b.0 = b.0.min(x);
            b.1 = b.1.min(y);
            b.2 = b.2.max(x);
            b.3 = b.3.max(y);
            b.4 += 1;
        }
    }
    boxes
        .into_iter()
        .map(|(x0, y0, x1, y1, area)| Component {
            x: x0,
            y: y0,
            w: x1 - x0 + 1,
            h: y1 - y0 + 1,
            area,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let w = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (m, w, rows.len())
    }

    #[test]
    fn components_are_8_connected_with_boxes_and_areas() {
        let (m, w, h) = mask(&[
            "##....#", //
            ".#...#.", //
            "..#....", //
            ".......", //
            "#.#.###", //
            "#.#..#.", //
        ]);
        let c = components(&m, w, h);
        assert_eq!(
            c,
            vec![
                Component {
                    x: 0,
                    y: 0,
                    w: 3,
                    h: 3,
                    area: 4
                },
                Component {
                    x: 5,
                    y: 0,
                    w: 2,
                    h: 2,
                    area: 2
                },
                Component {
                    x: 0,
                    y: 4,
                    w: 1,
                    h: 2,
                    area: 2
                },
                Component {
                    x: 2,
                    y: 4,
                    w: 1,
                    h: 2,
                    area: 2
                },
                Component {
                    x: 4,
                    y: 4,
                    w: 3,
                    h: 2,
                    area: 4
                },
            ]
        );
    }

    #[test]
    fn a_u_shape_merges_labels_found_apart() {
        // The two arms get different provisional labels and meet at the
        // bottom: union-find must merge them (and the later-seen arm's box).
        let (m, w, h) = mask(&[
            "#...#..#", //
            "#...#..#", //
            "#####..#", //
            ".......#", //
            "#####..#", //
            "....#..#", //
            "#####.##", //
        ]);
        let c = components(&m, w, h);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(
            c[0],
            Component {
                x: 0,
                y: 0,
                w: 5,
                h: 3,
                area: 9
            }
        );
        assert_eq!(
            c[1],
            Component {
                x: 6,
                y: 0,
                w: 2,
                h: 7,
                area: 8
            }
        );
        assert_eq!(
            c[2],
            Component {
                x: 0,
                y: 4,
                w: 5,
                h: 3,
                area: 11
            }
        );
    }

    #[test]
    fn dilation_grows_a_pixel_into_a_square_and_clips_at_edges() {
        let (m, w, h) = mask(&[
            "#......", //
            ".......", //
            ".......", //
            "....#..", //
            ".......", //
        ]);
        let d = dilate(&m, w, h, 1);
        let (want, _, _) = mask(&[
            "##.....", //
            "##.....", //
            "...###.", //
            "...###.", //
            "...###.", //
        ]);
        assert_eq!(d, want);
        assert_eq!(dilate(&m, w, h, 0), m);
        assert!(dilate(&m, w, h, 10).iter().all(|&v| v == 1));
    }

    #[test]
    fn box_blur_is_a_mean_with_replicated_edges() {
        let img = GrayImage::from_raw(5, 1, vec![0, 0, 90, 0, 0]).unwrap();
        assert_eq!(box_blur(&img, 1).into_raw(), vec![0, 30, 30, 30, 0]);
        let flat = GrayImage::from_pixel(7, 5, image::Luma([77]));
        assert_eq!(box_blur(&flat, 3), flat);
        let img = GrayImage::from_raw(3, 3, vec![0, 0, 0, 0, 90, 0, 0, 0, 0]).unwrap();
        assert_eq!(box_blur(&img, 1).into_raw(), vec![10; 9]);
    }

    #[test]
    fn difference_counts_pixels_over_the_threshold() {
        let a = GrayImage::from_raw(4, 1, vec![10, 10, 10, 200]).unwrap();
        let b = GrayImage::from_raw(4, 1, vec![10, 30, 41, 100]).unwrap();
        let (m, n) = difference_mask(&a, &b, 20);
        assert_eq!(m, vec![0, 0, 1, 1]);
        assert_eq!(n, 2);
    }
}
