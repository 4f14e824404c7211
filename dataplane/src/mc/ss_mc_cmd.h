/*
 * ss_mc_cmd.h - the memcached commands we know, in one table.
 *
 * SS_MC_COMMANDS(X) expands X(id, name, min_tokens, max_tokens, flags, counter)
 * once per command; the table generates the command enum, the name lookup the
 * dispatcher uses, the token-count check memcached makes before a command
 * runs (tokens counted as ss_mc_tokenize counts them, the terminal one
 * included; max 0 = no bound; a wrong count answers ERROR), and the counter
 * struct ss_counters bumps once per command (SS_MC_CTR(field), or
 * SS_MC_NO_CTR for commands memcached counts per key or per outcome).
 * Order is the lookup order: the most frequent commands first.
 *
 * Flags:
 *   SS_MC_CMD_META      a meta command: its flags are parsed once into the
 *                       request (ss_mc_req.c), after a datalen token for ms
 *   SS_MC_CMD_DATALEN   the token after the key is the value's length (ms)
 *   SS_MC_CMD_UDP_READ  proxy mode may answer it over UDP from the local copy
 *                       (it changes nothing; mg only without T or N)
 */
#ifndef SS_MC_CMD_H
#define SS_MC_CMD_H

#include <stddef.h>

#define SS_MC_CMD_META 0x1u
#define SS_MC_CMD_DATALEN 0x2u
#define SS_MC_CMD_UDP_READ 0x4u

#define SS_MC_COMMANDS(X)                                                        \
    X(GET, "get", 3, 0, SS_MC_CMD_UDP_READ, SS_MC_NO_CTR)                        \
    X(MG, "mg", 0, 0, SS_MC_CMD_META | SS_MC_CMD_UDP_READ, SS_MC_CTR(cmd_meta))  \
    X(SET, "set", 6, 7, 0, SS_MC_NO_CTR)                                         \
    X(MS, "ms", 0, 0, SS_MC_CMD_META | SS_MC_CMD_DATALEN, SS_MC_CTR(cmd_meta))   \
    X(GETS, "gets", 3, 0, SS_MC_CMD_UDP_READ, SS_MC_NO_CTR)                      \
    X(MN, "mn", 0, 0, SS_MC_CMD_UDP_READ, SS_MC_CTR(cmd_meta))                   \
    X(DELETE, "delete", 3, 5, 0, SS_MC_NO_CTR)                                   \
    X(MD, "md", 0, 0, SS_MC_CMD_META, SS_MC_CTR(cmd_meta))                       \
    X(MA, "ma", 0, 0, SS_MC_CMD_META, SS_MC_CTR(cmd_meta))                       \
    X(ME, "me", 0, 0, 0, SS_MC_CTR(cmd_meta))                                    \
    X(INCR, "incr", 4, 5, 0, SS_MC_NO_CTR)                                       \
    X(DECR, "decr", 4, 5, 0, SS_MC_NO_CTR)                                       \
    X(TOUCH, "touch", 4, 5, 0, SS_MC_NO_CTR)                                     \
    X(GAT, "gat", 3, 0, 0, SS_MC_NO_CTR)                                         \
    X(GATS, "gats", 3, 0, 0, SS_MC_NO_CTR)                                       \
    X(ADD, "add", 6, 7, 0, SS_MC_NO_CTR)                                         \
    X(REPLACE, "replace", 6, 7, 0, SS_MC_NO_CTR)                                 \
    X(APPEND, "append", 6, 7, 0, SS_MC_NO_CTR)                                   \
    X(PREPEND, "prepend", 6, 7, 0, SS_MC_NO_CTR)                                 \
    X(CAS, "cas", 7, 8, 0, SS_MC_NO_CTR)                                         \
    X(BGET, "bget", 3, 0, 0, SS_MC_NO_CTR)                                       \
    X(STATS, "stats", 0, 0, 0, SS_MC_NO_CTR)                                     \
    X(FLUSH_ALL, "flush_all", 2, 4, 0, SS_MC_CTR(cmd_flush))                     \
    X(VERSION, "version", 0, 0, SS_MC_CMD_UDP_READ, SS_MC_NO_CTR)                \
    X(VERBOSITY, "verbosity", 3, 4, 0, SS_MC_NO_CTR)                             \
    X(QUIT, "quit", 0, 0, 0, SS_MC_NO_CTR)                                       \
    X(SHUTDOWN, "shutdown", 0, 0, 0, SS_MC_NO_CTR)

enum ss_mc_cmd {
#define SS_MC_CMD_ENUM(id, name, min, max, flags, ctr) SS_MC_CMD_##id,
    SS_MC_COMMANDS(SS_MC_CMD_ENUM)
#undef SS_MC_CMD_ENUM
    SS_MC_CMD_UNKNOWN, /* not a command: ERROR (or, for an HTTP request line, close) */
    SS_MC_CMD__COUNT
};

struct ss_mc_cmd_info {
    const char *name;
    unsigned char name_len;
    unsigned char min_tokens, max_tokens;
    unsigned char flags;
    unsigned short counter; /* offset in struct ss_counters, or SS_MC_NO_CTR */
};

#define SS_MC_NO_CTR 0xffffu
#define SS_MC_CTR(field) ((unsigned short)offsetof(struct ss_counters, field))

/* Indexed by enum ss_mc_cmd (SS_MC_CMD_UNKNOWN included). */
extern const struct ss_mc_cmd_info ss_mc_cmd_table[SS_MC_CMD__COUNT];

/* The command named by [p, p + len), or SS_MC_CMD_UNKNOWN. */
enum ss_mc_cmd ss_mc_cmd_lookup(const char *p, size_t len);

#endif
