//! Text batches crossing the ABI: an array of (pointer, length) UTF-8 slices, so callers need no NUL
//! terminators and texts may contain any character.

use lorakit_core::Error;
use std::ffi::c_char;

/// One UTF-8 text: `len` bytes at `data` (no NUL terminator needed). `data` may be NULL only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LorakitText {
    pub data: *const c_char,
    pub len: usize,
}

/// Borrows `count` texts; NULL arrays (with count > 0), NULL data (with len > 0) and invalid UTF-8 are Input
/// errors that name the offending index.
///
/// # Safety
/// `texts` must be NULL or point to `count` valid `LorakitText`s whose bytes outlive the returned slice.
pub(crate) unsafe fn borrow_texts<'a>(
    texts: *const LorakitText,
    count: usize,
) -> Result<Vec<&'a str>, Error> {
    unsafe { borrow_named(texts, count, "texts", "text") }
}

/// `borrow_texts` for any list of strings: `list` names the array and `item` its entries in errors.
///
/// # Safety
/// As `borrow_texts`.
pub(crate) unsafe fn borrow_named<'a>(
    texts: *const LorakitText,
    count: usize,
    list: &str,
    item: &str,
) -> Result<Vec<&'a str>, Error> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if texts.is_null() {
        return Err(Error::Input(format!("{list} is NULL but count is {count}")));
    }
    let items = unsafe { std::slice::from_raw_parts(texts, count) };
    items
        .iter()
        .enumerate()
        .map(|(i, text)| {
            if text.len == 0 {
                return Ok("");
            }
            if text.data.is_null() {
                return Err(Error::Input(format!(
                    "{item} {i} has NULL data and length {}",
                    text.len
                )));
            }
            let bytes = unsafe { std::slice::from_raw_parts(text.data.cast::<u8>(), text.len) };
            std::str::from_utf8(bytes)
                .map_err(|e| Error::Input(format!("{item} {i} is not valid UTF-8: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    fn text(s: &[u8]) -> LorakitText {
        LorakitText {
            data: s.as_ptr().cast(),
            len: s.len(),
        }
    }

    #[test]
    fn borrows_texts_including_empty_and_nul() {
        let raw = [
            text(b"hello"),
            LorakitText {
                data: ptr::null(),
                len: 0,
            },
            text(b"a\0b"),
        ];
        let got = unsafe { borrow_texts(raw.as_ptr(), raw.len()) }.unwrap();
        assert_eq!(got, vec!["hello", "", "a\0b"]);
        assert!(unsafe { borrow_texts(ptr::null(), 0) }.unwrap().is_empty());
    }

    #[test]
    fn rejects_null_and_bad_utf8() {
        assert!(matches!(
            unsafe { borrow_texts(ptr::null(), 2) },
            Err(Error::Input(_))
        ));
        let raw = [
            text(b"ok"),
            LorakitText {
                data: ptr::null(),
                len: 3,
            },
        ];
        let err = unsafe { borrow_texts(raw.as_ptr(), 2) }.unwrap_err();
        assert!(matches!(err, Error::Input(m) if m.contains("text 1")));
        let raw = [text(b"ok"), text(b"ok"), text(&[0xc3, 0x28])];
        let err = unsafe { borrow_texts(raw.as_ptr(), 3) }.unwrap_err();
        assert!(matches!(err, Error::Input(m) if m.starts_with("text 2 is not valid UTF-8")));
    }
}
