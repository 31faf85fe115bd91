/*
 * redis_conn.h - one Redis connection's protocol state, transport-agnostic.
 *
 * Commands are formatted with hiredis's binary-safe argv formatter
 * (redisFormatCommandArgv) and replies parsed with hiredis's reader
 * (redisReaderCreate/Feed/GetReply): this file writes no RESP by hand.
 * Bytes go out through a write function (over cport: cl_redis_session_write,
 * which queues them with cp_session_send) and come in through
 * cl_redis_feed (over cport: from the session's on_raw callback).
 *
 * Pending commands are a FIFO: RESP2 answers in request order, so the
 * first reply that is not a pub/sub push belongs to the oldest command.
 *
 * Modes (RESP2). A CL_REDIS_COMMANDS connection runs any command except the
 * (P)SUBSCRIBE family. A CL_REDIS_SUBSCRIBER connection runs only AUTH, PING,
 * ROLE (before its first SUBSCRIBE: the handshake), (P)SUBSCRIBE and (P)UNSUBSCRIBE - a subscribed
 * RESP2 connection runs no other command - and hands "message"/"pmessage" pushes to on_message.
 * (P)SUBSCRIBE/(P)UNSUBSCRIBE must name their channels: each named channel
 * gets one confirmation, and the command's callback runs once, with the last.
 *
 * Threads. cl_redis_command may be called from any thread: the FIFO push and
 * the write happen under one lock, so the FIFO order is the byte order on
 * the wire (the write function must queue bytes in call order, as
 * cp_session_send does). cl_redis_feed and cl_redis_fail_all must be called
 * serially (a session's callbacks are); callbacks run on the caller of
 * cl_redis_feed / cl_redis_fail_all, without the lock, in FIFO order, and may
 * issue new commands. The write function may end the connection inline
 * (cl_redis_fail_all from a session's on_disconnected, which cport runs nested
 * when a worker's cp_session_send fails): the lock is recursive for that, and
 * the command's callback is then told like every other pending one.
 */
#ifndef CPORT_CLUSTER_REDIS_CONN_H
#define CPORT_CLUSTER_REDIS_CONN_H

#include <cport.h>

#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct cl_redis cl_redis;

typedef enum cl_redis_mode { CL_REDIS_COMMANDS = 0, CL_REDIS_SUBSCRIBER = 1 } cl_redis_mode;

/* A command's outcome. r: the reply, owned by the callback (freeReplyObject);
 * a Redis error is a reply of type REDIS_REPLY_ERROR. r is NULL when the
 * command got no reply (the connection failed or was closed; err says why). */
typedef void (*cl_reply_fn)(void *arg, redisReply *r, const char *err);
/* A pub/sub message (subscriber mode). pattern is NULL for "message". The
 * bytes are valid only during the call. */
typedef void (*cl_message_fn)(void *arg, const char *pattern, size_t pattern_len,
                              const char *channel, size_t channel_len, const char *data,
                              size_t len);
/* Queue len bytes for the connection, in call order. 0 or a negative errno. */
typedef int (*cl_write_fn)(void *io, const void *data, size_t len);

/* NULL if out of memory. on_message may be NULL for CL_REDIS_COMMANDS. */
cl_redis *cl_redis_create(cl_redis_mode mode, cl_write_fn write, void *io, cl_message_fn on_message,
                          void *msg_arg);
/* Fails every pending command (cl_redis_fail_all) and frees. Not while a
 * cl_redis_feed is running. */
void cl_redis_destroy(cl_redis *c);

/*
 * Send one command (argv[i] of argvlen[i] bytes; binary-safe) and register
 * fn(arg, ...) for its reply (fn may be NULL). 0; -EINVAL for a command the
 * mode does not allow (or argc < 1); -ENOTCONN after a protocol error or
 * cl_redis_fail_all; -ENOMEM; or the write function's error. On an error fn
 * is not called (a write that failed because the connection ended inside it
 * returns 0: fn got the failure).
 */
int cl_redis_command(cl_redis *c, int argc, const char **argv, const size_t *argvlen,
                     cl_reply_fn fn, void *arg);

/*
 * Bytes from the server. Runs the callbacks of every complete reply. 0, or
 * -EPROTO when the bytes are not RESP (a non-Redis service on the port) or a
 * reply matches no pending command: the error text is then in
 * cl_redis_error(), every pending command is failed with it, and the
 * connection refuses further commands - close the transport.
 */
int cl_redis_feed(cl_redis *c, const void *data, size_t len);

/* The connection is gone: every pending command's callback runs with r NULL
 * and err (copied), and further commands get -ENOTCONN. */
void cl_redis_fail_all(cl_redis *c, const char *err);

/* The last protocol error ("" if none). Valid until the next call on c. */
const char *cl_redis_error(const cl_redis *c);
/* Commands sent and not yet answered. */
size_t cl_redis_pending(cl_redis *c);

/* NOAUTH error replies received so far ("NOAUTH Authentication required."): the
 * connection is not authenticated. Their callbacks get them as any error reply. */
size_t cl_redis_noauth(cl_redis *c);

/* READONLY error replies received so far ("READONLY You can't write against a read only
 * replica."): the server is a replica now (a Sentinel failover). Their callbacks get them as any
 * error reply. */
size_t cl_redis_readonly(cl_redis *c);

/* A cl_write_fn for a cport session (io: the cp_session *): copies the bytes
 * into a send buffer and queues it with cp_session_send. */
int cl_redis_session_write(void *io, const void *data, size_t len);

/* A reply's text for logs: "ERR ..." for an error, else a short tag. */
const char *cl_redis_reply_kind(const redisReply *r);

#endif
