/* cport.h - everything cport offers, in one include. */
#ifndef CPORT_H
#define CPORT_H

#include "cport/alloc.h"
#include "cport/error.h"
#include "cport/export.h"
#include "cport/log.h"
#include "cport/net.h"
#include "cport/port.h"
#include "cport/socket.h"
#include "cport/stop.h"
#include "cport/version.h"

#endif /* CPORT_H */
