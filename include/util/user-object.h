/* User-creatable objects, QEMU's --object and object-add: named things
 * (TLS credentials, authorization lists) that other options refer to by
 * id.  The registry lives here, at the bottom, so that migration/, nbd/
 * and qapi/ can look objects up without knowing who created them.
 *
 * An object is described by a JSON object of properties: "qom-type" (the
 * type), "id", and the type's own properties.  From a command line every
 * value is a string ("verify-peer=on"); over QMP booleans are JSON
 * booleans; both are accepted.  The registry is thread-safe. */
#ifndef UTIL_USER_OBJECT_H
#define UTIL_USER_OBJECT_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

/* Check PROPS as user_object_add would, without creating anything or
 * touching a file: type known, id well-formed, properties known and of
 * the right form.  (Whether the id is free is checked by the add.) */
bool user_object_check(JsonObject *props, GError **errp);
/* Create the object PROPS describes (loading its files) and register it
 * under its id.  Fails, naming the object, when the id is taken or the
 * object cannot be created; nothing is registered then. */
bool user_object_add(JsonObject *props, GError **errp);
/* Unregister ID.  Users that hold a reference (a listening socket, a
 * session) keep the object alive until they drop it. */
bool user_object_del(const char *id, GError **errp);
/* Unregister everything (at exit). */
void user_objects_clear(void);

/* A new reference to the object registered as ID whose type name starts
 * with TYPE_PREFIX ("tls-creds-"), or NULL with errp set: "no object with
 * id 'x'", "object 'x' is an authz-simple, not tls-creds-*".  *TYPE
 * (optional) gets its type name (static). */
void *user_object_ref(const char *id, const char *type_prefix, const char **type,
                      GError **errp);

/* ---- For the object types (util/tls-*.c) ---- */

/* The properties of one object being created, for typed access with
 * messages that name the object: "tls-creds-x509 'tls0': ...". */
typedef struct UserObjectProps {
    const char *type;
    const char *id;
    JsonObject *props;
} UserObjectProps;

/* Fail with "TYPE 'ID': MESSAGE". */
void user_object_error(GError **errp, const UserObjectProps *p, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* String property KEY; NULL when absent (an error only if REQUIRED) or
 * not a string (an error). */
const char *user_object_str(const UserObjectProps *p, const char *key, bool required,
                            GError **errp);
/* Boolean property KEY (JSON boolean, or on/off, yes/no, true/false);
 * *OUT keeps its value when KEY is absent. */
bool user_object_bool(const UserObjectProps *p, const char *key, bool *out, GError **errp);
/* Fails on a property not in the NULL-terminated KEYS ("qom-type" and
 * "id" are always allowed), listing the accepted ones. */
bool user_object_only(const UserObjectProps *p, const char *const *keys, GError **errp);

#endif
