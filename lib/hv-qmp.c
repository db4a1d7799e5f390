/* placeholder */
#include "hv-driver.h"
const struct hv_driver hv_qmp_driver = { .name = "qmp" };
