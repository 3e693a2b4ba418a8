/*
** crawl_journal.c: the crawl frontier's journal (see crawl_journal.h).
**
** Appends use write(2) on a descriptor opened with O_APPEND, one write per
** batch of records and no buffer in this process, so what a call wrote is
** in the file even if the process is killed the instant after; nothing is
** synced per record (a machine that loses power may lose the last ones,
** which replay then treats as a torn tail).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crawl_journal.h"

#define HEADER "concur-frontier/1"
#define K0 0x6a6f75726e616c31ULL   /* "journal1" */
#define K1 0x636f6e6375722e6aULL   /* "concur.j" */

static void seterr (char *err, size_t errlen, const char *what,
                    const char *path) {
  if (err && errlen)
    snprintf(err, errlen, "%s '%s' (%s)", what, path, strerror(errno));
}

static uint32_t checksum (const unsigned char *p, size_t n) {
  return (uint32_t)concur_siphash(K0, K1, p, n);
}

int concur_journal_frame (concur_buf *b, int t, const void *p1, size_t n1,
                          const void *p2, size_t n2) {
  uint32_t len = (uint32_t)(1 + n1 + n2), sum;
  unsigned char type = (unsigned char)t;
  size_t at = b->len;
  if (1 + n1 + n2 > CONCUR_JOURNAL_MAXREC) return -1;
  if (concur_buf_reserve(b, 9 + n1 + n2)) return -1;
  memcpy(b->data + at, &len, 4);
  b->data[at + 8] = (char)type;
  if (n1) memcpy(b->data + at + 9, p1, n1);
  if (n2) memcpy(b->data + at + 9 + n1, p2, n2);
  sum = checksum((const unsigned char *)b->data + at + 8, len);
  memcpy(b->data + at + 4, &sum, 4);
  b->len = at + 9 + n1 + n2;
  return 0;
}

/* Writes all n bytes at p to fd; 0 or -1. */
static int writeall (int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int concur_journal_append (concur_journal *j, concur_buf *b) {
  int rc = 0;
  if (j->fd >= 0 && b->len) {
    rc = writeall(j->fd, b->data, b->len);
    if (rc == 0) j->size += b->len;
  }
  b->len = 0;
  return rc;
}

/* Replays the good records of fd; sets *good to where they end. */
static int replay (int fd, concur_journal_fn fn, void *ud, uint64_t *good,
                   int *header) {
  concur_buf b = CONCUR_BUF_INIT;
  size_t pos = 0;
  uint64_t off = 0;
  int rc = 0, eof = 0;
  *header = 0;
  for (;;) {
    uint32_t len, sum;
    /* a whole record in b from pos? else read more */
    if (b.len - pos < 8 ||
        (memcpy(&len, b.data + pos, 4), b.len - pos < 8 + (size_t)len)) {
      ssize_t r;
      if (eof) break;
      if (pos) {   /* keep the rest at the start */
        memmove(b.data, b.data + pos, b.len - pos);
        b.len -= pos;
        pos = 0;
      }
      if (concur_buf_reserve(&b, 1 << 20)) { rc = -1; break; }
      r = read(fd, b.data + b.len, b.cap - b.len);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) eof = 1;
      else b.len += (size_t)r;
      continue;
    }
    memcpy(&sum, b.data + pos + 4, 4);
    if (len == 0 || len > CONCUR_JOURNAL_MAXREC ||
        checksum((const unsigned char *)b.data + pos + 8, len) != sum)
      break;   /* torn */
    {
      int type = (unsigned char)b.data[pos + 8];
      const unsigned char *p = (const unsigned char *)b.data + pos + 9;
      if (!*header) {
        if (type != 'H' || len - 1 != sizeof HEADER - 1 ||
            memcmp(p, HEADER, len - 1) != 0) {
          rc = -2;   /* not a journal */
          break;
        }
        *header = 1;
      }
      else if ((rc = fn(ud, type, p, len - 1)) != 0) break;
    }
    pos += 8 + (size_t)len;
    off += 8 + (uint64_t)len;
  }
  concur_buf_free(&b);
  *good = off;
  return rc;
}

/* Is the file (with no good record) empty, or the start of a header
** record, cut short by a crash while it was written? Else it is not a
** journal, and it is left alone. */
static int torn_header (int fd) {
  concur_buf h = CONCUR_BUF_INIT;
  char buf[64];
  ssize_t n = pread(fd, buf, sizeof buf, 0);
  int ok = n == 0;
  if (n > 0 &&
      concur_journal_frame(&h, 'H', HEADER, sizeof HEADER - 1, NULL, 0) == 0)
    ok = (size_t)n < h.len && memcmp(buf, h.data, (size_t)n) == 0;
  concur_buf_free(&h);
  return ok;
}

int concur_journal_open (concur_journal *j, const char *path,
                         concur_journal_fn fn, void *ud, char *err,
                         size_t errlen) {
  int header, rc;
  uint64_t good;
  j->fd = -1;
  j->size = 0;
  if ((j->path = strdup(path)) == NULL) return -1;
  j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (j->fd < 0) {
    seterr(err, errlen, "cannot open the crawl journal", path);
    goto fail;
  }
  rc = replay(j->fd, fn, ud, &good, &header);
  if (rc == 0 && !header && !torn_header(j->fd)) rc = -2;
  if (rc == -2) {
    if (err && errlen)
      snprintf(err, errlen, "'%s' is not a crawl journal", path);
    goto fail;
  }
  if (rc != 0) {
    if (err && errlen) snprintf(err, errlen, "out of memory replaying '%s'",
                                path);
    goto fail;
  }
  if (ftruncate(j->fd, (off_t)good) != 0 ||   /* a torn tail goes */
      lseek(j->fd, 0, SEEK_END) < 0) {
    seterr(err, errlen, "cannot write the crawl journal", path);
    goto fail;
  }
  j->size = good;
  {   /* from now on, appends only (O_APPEND: even after a torn tail) */
    int fl = fcntl(j->fd, F_GETFL);
    if (fl < 0 || fcntl(j->fd, F_SETFL, fl | O_APPEND) < 0) {
      seterr(err, errlen, "cannot write the crawl journal", path);
      goto fail;
    }
  }
  if (!header) {   /* a new (or empty) file */
    concur_buf b = CONCUR_BUF_INIT;
    if (concur_journal_frame(&b, 'H', HEADER, sizeof HEADER - 1, NULL, 0) ||
        concur_journal_append(j, &b)) {
      concur_buf_free(&b);
      seterr(err, errlen, "cannot write the crawl journal", path);
      goto fail;
    }
    concur_buf_free(&b);
  }
  return 0;
fail:
  if (j->fd >= 0) close(j->fd);
  j->fd = -1;
  free(j->path);
  j->path = NULL;
  return -1;
}

int concur_journal_rewrite (concur_journal *j, concur_buf *b) {
  concur_buf all = CONCUR_BUF_INIT;
  size_t n = strlen(j->path) + 8;
  char *tmp = malloc(n);
  int fd = -1, rc = -1;
  if (j->fd < 0) { b->len = 0; free(tmp); return 0; }
  if (tmp == NULL) return -1;
  snprintf(tmp, n, "%s.tmp", j->path);
  if (concur_journal_frame(&all, 'H', HEADER, sizeof HEADER - 1, NULL, 0) ||
      concur_buf_write(&all, b->data, b->len))
    goto done;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || writeall(fd, all.data, all.len) || fsync(fd) ||
      rename(tmp, j->path))
    goto done;
  {   /* the rename itself, on disk */
    char *dir = strdup(j->path), *slash = dir ? strrchr(dir, '/') : NULL;
    int dfd;
    if (dir) {
      if (slash) *slash = '\0';
      dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY |
                 O_CLOEXEC);
      if (dfd >= 0) { fsync(dfd); close(dfd); }
      free(dir);
    }
  }
  close(j->fd);
  j->fd = open(j->path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (j->fd < 0) goto done;
  j->size = all.len;
  rc = 0;
done:
  if (fd >= 0) close(fd);
  if (rc) unlink(tmp);
  free(tmp);
  concur_buf_free(&all);
  b->len = 0;
  return rc;
}

void concur_journal_close (concur_journal *j) {
  if (j->fd >= 0) {
    fsync(j->fd);
    close(j->fd);
  }
  j->fd = -1;
  free(j->path);
  j->path = NULL;
}
