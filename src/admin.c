/* admin.c - placeholder until written */
typedef int ahoyd_placeholder_admin;
