/*
** obj.h: the header of every object concur shares between Lua states.
**
** A shared object is a C struct that starts with a concur_obj: a type and an
** atomic reference count. Each Lua state that holds the object has a small
** proxy userdata (see csrc/proxy.c) owning one reference; the codec gives a
** receiving state a new proxy and a new reference. The last unref calls the
** type's destroy function, on whichever thread dropped it, so destroy must
** never block and must not touch any Lua state.
*/
#ifndef CONCUR_CORE_OBJ_H
#define CONCUR_CORE_OBJ_H

#include <stdatomic.h>

typedef struct concur_obj concur_obj;

typedef struct concur_objtype {
  const char *name;                 /* metatable name, e.g. "concur.Queue" */
  void (*destroy) (concur_obj *o);  /* called once, when refs drops to 0 */
  /* for objects that cannot cross to another process: why, and what to do
  ** instead (NULL: a generic message) */
  const char *stays;
} concur_objtype;

struct concur_obj {
  const concur_objtype *type;
  atomic_long refs;
};

static inline void concur_obj_init (concur_obj *o, const concur_objtype *t) {
  o->type = t;
  atomic_init(&o->refs, 1);
}

static inline concur_obj *concur_obj_ref (concur_obj *o) {
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
  return o;
}

/* NOTE: acq_rel so that every write made under any reference happens before
** destroy reads the object. */
static inline void concur_obj_unref (concur_obj *o) {
  if (o && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
    o->type->destroy(o);
}

#endif
