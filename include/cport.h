/* cport.h - everything cport offers, in one include. */
#ifndef CPORT_H
#define CPORT_H

#include "cport/port.h"
#include "cport/net.h"
#include "cport/alloc.h"

#endif /* CPORT_H */
