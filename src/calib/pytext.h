/* pytext.h — the two pieces of Python text semantics the calibration readers depend on:
 * `str.strip()` (the reference strips every caption line and every pile document before use,
 * spec/ALGORITHMS.md §7.1, §7.5, §7.6) and universal-newline line splitting (`for line in f`
 * on a file opened in text mode; Hugging Face's "text" loader also reads lines this way, through
 * a text-mode file and StringIO.readlines, so U+2028 and friends do not split lines).
 * Text is UTF-8; bytes that do not decode are treated as non-space, non-newline characters. */
#ifndef QV_CALIB_PYTEXT_H
#define QV_CALIB_PYTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Python's str.isspace() for one code point (Unicode White_Space as CPython defines it:
 * \t \n \v \f \r, U+001C..U+001F, space, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000). */
bool qv_py_isspace(uint32_t cp);

/* str.strip(): narrows [*begin, *end) of s to drop leading and trailing Python whitespace. */
void qv_py_strip(const char *s, size_t *begin, size_t *end);

/* Line iteration over s[0..len) with the terminators \n, \r\n and \r: from *pos, sets the line
 * to [*line_begin, *line_end) (terminator excluded) and advances *pos past the terminator.
 * Returns false at the end. As in Python, a final terminator does not start an empty line. */
bool qv_py_next_line(const char *s, size_t len, size_t *pos, size_t *line_begin, size_t *line_end);

#endif
