//! How a convolution's batch is spread over threads and fed to the GEMM: groups of images,
//! per-thread scratch, strided matrix views, and the sum of per-worker weight gradients.
//! Shared with [`super::super::winograd`].

use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::DerefMut;

use super::ConvGeom;

/// How the groups of a batch are spread over threads.
pub(crate) struct Schedule {
    pub(crate) group: usize,
    pub(crate) groups: usize,
    /// Output rows per group when a lone image is split into blocks of rows (`0`: not split).
    pub(crate) rows: usize,
    /// Blocks of rows per image (1 when not split).
    blocks: usize,
    /// Run groups in parallel (single-threaded GEMMs) rather than in sequence.
    pub(crate) parallel_groups: bool,
    pub(crate) threads: usize,
}

impl Schedule {
    pub(crate) fn of(g: &ConvGeom) -> Schedule {
        Schedule::new(g.batch, g.group())
    }

    /// [`Schedule::of`], with lone images whose column matrix would outgrow the budget split
    /// into blocks of output rows ([`ConvGeom::row_block`]). Blocks of one image read and
    /// write disjoint output rows but overlapping input rows: not for the input gradient.
    pub(crate) fn row_blocks(g: &ConvGeom) -> Schedule {
        let mut s = Schedule::of(g);
        let rows = g.row_block();
        if s.group == 1 && rows < g.ho {
            s.rows = rows;
            s.blocks = g.ho.div_ceil(rows);
            s.groups = g.batch * s.blocks;
            s.parallel_groups = s.groups >= s.threads;
        }
        s
    }

    /// A batch of `batch` images in groups of at most `group`, as even as they come and, when
    /// there are more of them than threads, as many as a multiple of the threads: 16 images
    /// in groups of 5 were 5, 5, 5 and 1, one thread's share 10 images and the other's 6
    /// (ResNet-18's 7x7 maps at 224 px); they are now 4 groups of 4.
    pub(crate) fn new(batch: usize, group: usize) -> Schedule {
        let threads = rayon::current_num_threads().max(1);
        let mut groups = batch.div_ceil(group.max(1));
        if groups > threads {
            groups = groups.next_multiple_of(threads).min(batch.max(1));
        }
        let group = batch.div_ceil(groups.max(1)).max(1);
        let groups = batch.div_ceil(group);
        Schedule {
            group,
            groups,
            rows: 0,
            blocks: 1,
            parallel_groups: groups >= threads,
            threads,
        }
    }

    /// Threads each GEMM splits over: all of them when the groups run one after another.
    pub(crate) fn gemm_threads(&self) -> usize {
        if self.parallel_groups {
            1
        } else {
            self.threads
        }
    }

    /// Group `i` of a batch of `batch` images.
    pub(crate) fn group_at(&self, i: usize, batch: usize) -> Group {
        if self.rows > 0 {
            let (b, r) = (i / self.blocks, i % self.blocks);
            return Group {
                b0: b,
                b1: b + 1,
                rows: Some((r * self.rows, (r + 1) * self.rows)),
            };
        }
        Group {
            b0: i * self.group,
            b1: ((i + 1) * self.group).min(batch),
            rows: None,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Two scratch buffers of at least `a` and `b` floats (contents unspecified), reused per thread.
pub(crate) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|s| {
        // Busy when this thread, waiting inside a parallel GEMM, picked up another conv's work.
        let Ok(mut s) = s.try_borrow_mut() else {
            return f(&mut vec![0.0; a], &mut vec![0.0; b]);
        };
        let [sa, sb] = &mut *s;
        if sa.len() < a {
            sa.resize(a, 0.0);
        }
        if sb.len() < b {
            sb.resize(b, 0.0);
        }
        f(&mut sa[..a], &mut sb[..b])
    })
}

/// A strided read-only matrix view.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub(crate) ptr: *const f32,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

// SAFETY: a view of f32s that outlive the kernel call it is used in; only read.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

/// `dst [m, n]` (row stride `dst_rs`) `= (dst if accumulate) + a [m, k] x b [k, n]`, on
/// `threads` threads.
///
/// Several threads split `dst` into blocks of rows or of columns (whichever it has more of),
/// one single-threaded GEMM each, rather than hand `gemm` its own parallelism: on the GEMMs of
/// ResNet's 2x2 to 8x8 maps, which run one group at a time, `gemm`'s two threads took
/// 0.75-1.7x its one thread's time, the split 0.55-0.9x (alternating in one process;
/// bench/README.md). A block's GEMM may cut its sums into other depth blocks than one GEMM
/// over the whole would: a change of rounding, not of result.
///
/// # Safety
/// Every pointer must be valid for the extents its strides and `m`, `n`, `k` imply.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: Mat,
    b: Mat,
    threads: usize,
) {
    let parts = threads.min(m.max(n) / SPLIT_MIN).max(1);
    if parts == 1 {
        return gemm1(m, n, k, dst, dst_rs, accumulate, a, b);
    }
    let dst = SendPtr(dst);
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    (0..parts).into_par_iter().for_each(|i| {
        let (lo, hi) = (i * len / parts, (i + 1) * len / parts);
        // SAFETY: block i of dst's rows (or columns) and the matching rows of a (or columns
        // of b), within the caller's extents; blocks are disjoint.
        unsafe {
            if by_rows {
                let a = Mat {
                    ptr: a.ptr.offset(lo as isize * a.rs),
                    ..a
                };
                gemm1(
                    hi - lo,
                    n,
                    k,
                    dst.get().add(lo * dst_rs),
                    dst_rs,
                    accumulate,
                    a,
                    b,
                );
            } else {
                let b = Mat {
                    ptr: b.ptr.offset(lo as isize * b.cs),
                    ..b
                };
                gemm1(m, hi - lo, k, dst.get().add(lo), dst_rs, accumulate, a, b);
            }
        }
    });
}

/// Rows or columns below which a block is not worth a thread of its own.
const SPLIT_MIN: usize = 32;

/// [`matmul`] on the calling thread.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm1(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: Mat,
    b: Mat,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// Raw pointers cross into rayon's closures; each group writes a disjoint range.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method, so closures capture the whole (Send) wrapper rather than its raw field.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

pub(crate) fn for_each_group(sched: &Schedule, f: impl Fn(usize) + Sync + Send) {
    if sched.parallel_groups {
        (0..sched.groups).into_par_iter().for_each(f);
    } else {
        (0..sched.groups).for_each(f);
    }
}

/// Images `[b0, b1)`: one group of a [`Schedule`], or output rows `[r0, r1)` of one image
/// (`r1` may pass the last row: [`Group::out_rows`] clips it).
#[derive(Clone, Copy)]
pub(crate) struct Group {
    pub(crate) b0: usize,
    pub(crate) b1: usize,
    pub(crate) rows: Option<(usize, usize)>,
}

impl Group {
    pub(crate) fn images(self) -> usize {
        self.b1 - self.b0
    }

    /// The output rows this group covers.
    pub(crate) fn out_rows(self, g: &ConvGeom) -> std::ops::Range<usize> {
        self.rows.map_or(0..g.ho, |(r0, r1)| r0..r1.min(g.ho))
    }

    /// Output pixels per image this group covers: its rows' share of `Ho*Wo`.
    pub(crate) fn pixels(self, g: &ConvGeom) -> usize {
        self.out_rows(g).len() * g.wo
    }

    /// Offset of the group's first output pixel within its image's plane.
    pub(crate) fn first_pixel(self, g: &ConvGeom) -> usize {
        self.out_rows(g).start * g.wo
    }

    /// A group of one image reads and writes its tensors in place, without gather/scatter.
    pub(crate) fn alone(self) -> bool {
        self.images() == 1
    }
}

impl Mat {
    /// A row-major matrix with `cols` columns.
    pub(crate) fn row_major(ptr: *const f32, cols: usize) -> Mat {
        Mat {
            ptr,
            rs: cols as isize,
            cs: 1,
        }
    }

    pub(crate) fn t(self) -> Mat {
        Mat {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `Σ_groups f(group)` for a weight gradient of `len` floats: each worker accumulates into its
/// own zeroed buffer over a contiguous run of groups (`f` adds onto the buffer it is given),
/// then the workers' buffers are added up.
pub(crate) fn sum_over_groups(
    sched: &Schedule,
    batch: usize,
    len: usize,
    f: impl Fn(Group, &mut [f32]) + Sync,
) -> Vec<f32> {
    sum_over_groups_in(sched, batch, len, |n| vec![0f32; n], f)
}

/// [`sum_over_groups`] in buffers made by `zeros` (`n` zeros each).
pub(crate) fn sum_over_groups_in<B: DerefMut<Target = [f32]> + Send>(
    sched: &Schedule,
    batch: usize,
    len: usize,
    zeros: impl Fn(usize) -> B + Sync,
    f: impl Fn(Group, &mut [f32]) + Sync,
) -> B {
    let workers = if sched.parallel_groups {
        sched.threads.min(sched.groups)
    } else {
        1
    };
    let per = sched.groups.div_ceil(workers);
    let partials: Vec<B> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = zeros(len);
            for i in t * per..((t + 1) * per).min(sched.groups) {
                f(sched.group_at(i, batch), &mut acc);
            }
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut sum = it.next().unwrap_or_else(|| zeros(len));
    for p in it {
        for (a, b) in sum.iter_mut().zip(p.iter()) {
            *a += b;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups cover the batch once, are no larger than asked, and come out even where the
    /// batch allows: 16 images in groups of at most 5 are 4 groups of 4, not 5, 5, 5 and 1.
    #[test]
    fn groups_cover_the_batch_and_come_out_even() {
        for batch in 1..=33 {
            for group in 1..=batch + 1 {
                let s = Schedule::new(batch, group);
                assert!(s.group <= group.max(1), "{batch}/{group}");
                let sizes: Vec<usize> = (0..s.groups)
                    .map(|i| s.group_at(i, batch).images())
                    .collect();
                assert_eq!(sizes.iter().sum::<usize>(), batch, "{batch}/{group}");
                assert!(sizes.iter().all(|&n| n > 0), "{batch}/{group}: {sizes:?}");
            }
        }
        let s = Schedule::new(16, 5);
        assert_eq!((s.groups, s.group), (4, 4));
    }

    /// Split over threads by rows (tall products) and by columns (wide ones), strided views
    /// and accumulation included, `matmul` equals the one-thread product to rounding.
    #[test]
    fn a_split_product_equals_the_one_thread_product() {
        let fill = |n: usize, s: f32| (0..n).map(|i| (i as f32 * s).sin()).collect::<Vec<_>>();
        for (m, n, k) in [(130, 40, 70), (40, 130, 70), (96, 96, 33)] {
            let (a, b) = (fill(m * k, 0.37), fill(n * k, 0.11));
            // a row-major [m, k]; b stored [n, k], read through its transpose as [k, n].
            let (am, bm) = (
                Mat::row_major(a.as_ptr(), k),
                Mat::row_major(b.as_ptr(), k).t(),
            );
            let start = fill(m * n, 0.7);
            let run = |threads: usize| {
                let mut d = start.clone();
                // SAFETY: d [m, n], a [m, k] and b^T [k, n] as allocated above.
                unsafe { matmul(m, n, k, d.as_mut_ptr(), n, true, am, bm, threads) };
                d
            };
            let (one, split) = (run(1), run(3));
            let worst = one
                .iter()
                .zip(&split)
                .fold(0f32, |w, (x, y)| w.max((x - y).abs()));
            assert!(worst < 1e-4, "{m}x{n}x{k}: {worst}");
            assert!(
                one.iter().zip(&start).any(|(x, s)| x != s),
                "nothing was added"
            );
        }
    }
}
