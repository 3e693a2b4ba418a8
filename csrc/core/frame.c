/*
** frame.c: the frames of frame.h: blocking writes and reads (the worker's
** side), the prefix of a frame whose references are lent (the supervisor
** sends it without blocking, procsup.c), and the references part of a body.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "frame.h"
#include "shobj.h"

static int write_all (int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A frame whose body is 'pre' and then 'body'. */
static int frame_write2 (int fd, uint32_t type, uint64_t id, const void *pre,
                         size_t prelen, const void *body, size_t len) {
  concur_frame h;
  if (len > CONCUR_FRAME_MAX || prelen > CONCUR_FRAME_MAX - len) return -1;
  h.len = (uint32_t)(prelen + len);
  h.type = type;
  h.id = id;
  if (h.len > 0 && h.len <= 4096) {   /* one send for small frames */
    char small[sizeof h + 4096];
    memcpy(small, &h, sizeof h);
    if (prelen) memcpy(small + sizeof h, pre, prelen);
    if (len) memcpy(small + sizeof h + prelen, body, len);
    return write_all(fd, small, sizeof h + h.len);
  }
  if (write_all(fd, &h, sizeof h)) return -1;
  if (prelen && write_all(fd, pre, prelen)) return -1;
  return len ? write_all(fd, body, len) : 0;
}

int concur_frame_write (int fd, uint32_t type, uint64_t id,
                        const void *body, size_t len) {
  return frame_write2(fd, type, id, NULL, 0, body, len);
}

/* ---- the references part: a 32-bit count, then the references ----------- */

/* Reference i of the references part at p (maybe unaligned). */
static concur_shref ref_at (const char *p, uint32_t i) {
  concur_shref r;
  memcpy(&r, p + sizeof(uint32_t) + i * sizeof r, sizeof r);
  return r;
}

/* Writes the references part of b at p (room for refs_size(b) bytes),
** exporting each object when 'export'. */
static void put_refs (char *p, const concur_buf *b, int export) {
  uint32_t n = (uint32_t)b->nobjs;
  memcpy(p, &n, sizeof n);
  for (uint32_t i = 0; i < n; i++) {
    concur_shref r;
    if (export) concur_shobj_export(b->objs[i], &r);
    else concur_shobj_lend(b->objs[i], &r);
    memcpy(p + sizeof n + i * sizeof r, &r, sizeof r);
  }
}

static size_t refs_size (const concur_buf *b) {
  return sizeof(uint32_t) + b->nobjs * sizeof(concur_shref);
}

int concur_frame_writebuf (int fd, uint32_t type, uint64_t id,
                           const concur_buf *b) {
  size_t prelen = refs_size(b);
  char small[sizeof(uint32_t) + 8 * sizeof(concur_shref)];
  char *pre = b->nobjs <= 8 ? small : malloc(prelen);
  int rc;
  if (pre == NULL || b->nobjs > UINT32_MAX) {
    if (pre != small) free(pre);
    return -1;
  }
  put_refs(pre, b, 1);
  rc = frame_write2(fd, type, id, pre, prelen, b->data, b->len);
  if (rc != 0)    /* not delivered: nobody will adopt them */
    concur_frame_drop(pre, prelen);
  if (pre != small) free(pre);
  return rc;
}

char *concur_frame_lend (uint32_t type, uint64_t id, const concur_buf *b,
                         size_t *len) {
  concur_frame h;
  size_t prelen = refs_size(b);
  char *p;
  if (b->nobjs > UINT32_MAX || b->len > CONCUR_FRAME_MAX
      || prelen > CONCUR_FRAME_MAX - b->len)
    return NULL;
  if ((p = malloc(sizeof h + prelen)) == NULL) return NULL;
  h.len = (uint32_t)(prelen + b->len);
  h.type = type;
  h.id = id;
  memcpy(p, &h, sizeof h);
  put_refs(p + sizeof h, b, 0);
  *len = sizeof h + prelen;
  return p;
}

int concur_frame_tobuf (const char *body, size_t len, concur_buf *out,
                        int lent) {
  uint32_t n = 0;
  size_t i = 0, skip;
  int rc = 0;
  if (len >= sizeof n) memcpy(&n, body, sizeof n);
  if (len < sizeof n || n > (len - sizeof n) / sizeof(concur_shref))
    return -1;                        /* malformed: no reference to trust */
  skip = sizeof n + (size_t)n * sizeof(concur_shref);
  for (; i < n; i++) {
    concur_shref r = ref_at(body, (uint32_t)i);
    concur_obj *o;
    if (lent) concur_shref_dup(&r);   /* then adopted like an exported one */
    if ((o = concur_shobj_import(&r)) == NULL) {
      rc = -1;
      i++;
      break;
    }
    rc = concur_buf_addobj(out, o);
    concur_obj_unref(o);
    if (rc != 0) {
      i++;
      break;
    }
  }
  for (; i < n && !lent; i++) {   /* after a failure: drop the rest */
    concur_shref r = ref_at(body, (uint32_t)i);
    concur_shref_drop(&r);
  }
  if (rc == 0 && len > skip) rc = concur_buf_write(out, body + skip, len - skip);
  if (rc != 0) concur_buf_free(out);
  return rc;
}

void concur_frame_drop (const char *body, size_t len) {
  uint32_t n;
  if (len < sizeof n) return;
  memcpy(&n, body, sizeof n);
  if (n > (len - sizeof n) / sizeof(concur_shref))   /* those it has in full */
    n = (uint32_t)((len - sizeof n) / sizeof(concur_shref));
  for (uint32_t i = 0; i < n; i++) {
    concur_shref r = ref_at(body, i);
    concur_shref_drop(&r);
  }
}

/* ---- reading --------------------------------------------------------------- */

static int read_all (int fd, void *p, size_t n) {
  char *s = p;
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, s + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) return got == 0 ? 1 : -1;
    got += (size_t)r;
  }
  return 0;
}

int concur_frame_read (int fd, concur_frame *h, char **body) {
  int rc = read_all(fd, h, sizeof *h);
  *body = NULL;
  if (rc) return rc;
  if (h->len > CONCUR_FRAME_MAX) return -1;
  if (h->len == 0) return 0;
  *body = malloc(h->len);
  if (*body == NULL) return -1;
  if (read_all(fd, *body, h->len) != 0) {
    free(*body);
    *body = NULL;
    return -1;
  }
  return 0;
}
