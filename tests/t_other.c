/* The second translation unit of every unit test: it includes cb.h without
   CB_IMPLEMENTATION, so the calls below prove the inline fast path links and works
   outside the file that holds the implementation. */
#include "cb.h"

bool t_call(cb_breaker *b, cb_outcome o);
int t_calls(cb_breaker *b, cb_outcome o, int n);

bool t_call(cb_breaker *b, cb_outcome o)
{
    cb_ticket t;
    if (!cb_allow(b, &t))
        return false;
    cb_record(b, &t, o);
    return true;
}

int t_calls(cb_breaker *b, cb_outcome o, int n)
{
    int admitted = 0;
    for (int i = 0; i < n; i++)
        admitted += t_call(b, o);
    return admitted;
}
