/* placeholder */
#include "hv-driver.h"
const struct hv_driver hv_libvirt_driver = { .name = "libvirt" };
