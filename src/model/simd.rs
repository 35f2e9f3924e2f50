//! AVX2 versions of drpipe's own hot loops, chosen at run time. Without a `target-cpu`, rustc
//! compiles for baseline x86-64 (SSE2), so the loops of the transforms, im2col and batch norm
//! ran 4 lanes wide while only `gemm` dispatched to AVX2 itself. [`avx2_dispatch!`] compiles a
//! function body a second time with AVX2 and FMA enabled and picks that copy where the CPU has
//! them. Results are unchanged to the bit: rustc neither fuses multiply-adds nor reorders
//! float sums without being asked, so the wider copy computes the same operations.

use std::sync::OnceLock;

/// Whether this CPU has AVX2 and FMA (asked once).
pub fn avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `fn name(args) -> ret => body_fn;` defines `name`, which calls `body_fn` (an
/// `#[inline(always)]` function, so that it is compiled into each copy) through an
/// AVX2 + FMA copy where [`avx2`] says so.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path;) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::model::simd::avx2() {
                    // SAFETY: the CPU has the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use avx2_dispatch;
