/*
** shbuf.c: encoded values in arena blocks (shbuf.h).
**
** Each object reference in a block is owned by the block: packing takes
** references of its own (and pack then drops the item's), freeing drops
** them, and a copy out takes references of its own. A local block's pointers are only ever followed
** by the process whose pid it records (another process's pointer is never
** dereferenced: copyout refuses, free leaks it).
*/
#include <stdlib.h>
#include <string.h>
#include "shbuf.h"
#include "sync.h"

typedef struct shblock {
  uint64_t len;
  uint32_t nobjs;
  int32_t pid;               /* whose pointers the references hold, or 0 */
} shblock;

static concur_shref *block_refs (shblock *b) {
  return (concur_shref *)(b + 1);
}

concur_shoff concur_shbuf_packcopy (const concur_buf *item, int share) {
  concur_shoff off;
  shblock *b = concur_shm_alloc(sizeof *b + item->nobjs * sizeof(concur_shref)
                                + item->len, &off);
  concur_shref *r;
  if (b == NULL) return 0;
  b->len = item->len;
  b->nobjs = (uint32_t)item->nobjs;
  b->pid = 0;
  r = block_refs(b);
  for (size_t i = 0; i < item->nobjs; i++) {
    concur_obj *o = item->objs[i];
    char err[8];
    if (concur_shclass_of(o->type)
        && (!share || concur_shobj_share(o, err, sizeof err) == 0))
      concur_shobj_export(o, &r[i]);
    else {                   /* the block holds a reference of its own */
      r[i].id = 0;
      r[i].pad = 0;
      r[i].off = (uint64_t)(uintptr_t)concur_obj_ref(o);
      b->pid = concur_sync_pid();
    }
  }
  if (item->len) memcpy(r + b->nobjs, item->data, item->len);
  return off;
}

concur_shoff concur_shbuf_pack (concur_buf *item, int share) {
  concur_shoff off = concur_shbuf_packcopy(item, share);
  if (off) concur_buf_free(item);   /* its references: the block has its own */
  return off;
}

void concur_shbuf_free (concur_shoff off) {
  shblock *b = concur_shm_ptr(off);
  concur_shref *r = block_refs(b);
  int mine = b->pid == concur_sync_pid();
  for (uint32_t i = 0; i < b->nobjs; i++) {
    if (r[i].id)
      concur_shref_drop(&r[i]);
    else if (mine)
      concur_obj_unref((concur_obj *)(uintptr_t)r[i].off);
    /* NOTE: else it leaks: it lives in another process's memory */
  }
  concur_shm_free(off);
}

int concur_shbuf_copyout (concur_shoff off, concur_buf *out) {
  shblock *b = concur_shm_ptr(off);
  concur_shref *r = block_refs(b);
  if (b->pid != 0 && b->pid != concur_sync_pid()) return CONCUR_SHB_FOREIGN;
  if (concur_buf_write(out, r + b->nobjs, b->len) != 0) goto nomem;
  for (uint32_t i = 0; i < b->nobjs; i++) {
    concur_obj *o;
    if (r[i].id) {
      concur_shref dup = r[i];
      concur_shref_dup(&dup);
      o = concur_shobj_import(&dup);    /* adopts the new reference */
      if (o == NULL) goto nomem;
    }
    else {
      o = (concur_obj *)(uintptr_t)r[i].off;
      concur_obj_ref(o);
    }
    if (concur_buf_addobj(out, o) != 0) {
      concur_obj_unref(o);
      goto nomem;
    }
    concur_obj_unref(o);                /* addobj took its own */
  }
  return 0;
nomem:
  concur_buf_free(out);
  return CONCUR_SHB_NOMEM;
}

int concur_shbuf_local (concur_shoff off) {
  return ((shblock *)concur_shm_ptr(off))->pid != 0;
}

size_t concur_shbuf_len (concur_shoff off) {
  return (size_t)((shblock *)concur_shm_ptr(off))->len;
}

int concur_shbuf_refs (concur_shoff off, concur_shref **v, size_t *n,
                       size_t *cap) {
  shblock *b = concur_shm_ptr(off);
  concur_shref *r = block_refs(b);
  for (uint32_t k = 0; k < b->nobjs; k++) {
    if (r[k].id == 0) continue;
    if (*n == *cap) {
      size_t ncap = *cap ? 2 * *cap : 8;
      concur_shref *nv = realloc(*v, ncap * sizeof *nv);
      if (nv == NULL) return -1;
      *v = nv;
      *cap = ncap;
    }
    (*v)[*n] = r[k];
    concur_shref_dup(&(*v)[(*n)++]);
  }
  return 0;
}

int concur_shbuf_shareall (concur_shref *v, size_t n, char *err,
                           size_t errsize) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (rc == 0) rc = concur_shref_share(&v[i], err, errsize);
    concur_shref_drop(&v[i]);
  }
  free(v);
  return rc;
}
