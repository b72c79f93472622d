/* cb_registry_add's refusal of a name already held, checked exhaustively (check.sh).

   NPROC adders each add one breaker; adders 0 and 1 add breakers of the same name, the
   others names of their own. An add puts its breaker in the first free slot (a CAS on
   each slot below `used`, then reserving a new index with a CAS on `used` and a CAS on
   that slot), then reads every other slot below `used`; on finding its own name there
   it empties its own slot again (a CAS, as cb_registry_remove) and is refused. One
   remover takes out the breaker of adder 2 (a slot freed for reuse), with -DREMOVE.

   Checked at the end: never two slots holding one name; an adder whose name nobody else
   adds is never refused; a refused adder's breaker is in no slot; a kept one's in
   exactly one. The planted bug drops the look at the other slots (-DBUG=1: both of a
   name may stay); -DBUG=2 looks only below its own slot, a tie-break by index that slot
   reuse defeats. */

#ifndef NPROC
#define NPROC 3
#endif
#define NSLOT NPROC

byte slot[NSLOT];   /* 0 free, else adder id + 1 */
byte used;
bool kept[NPROC];
bool refused[NPROC];
byte done;

proctype adder(byte me)
{
    byte i = 0, at = 255, u, o;
    /* put: reuse a free slot below used */
    u = used;
    do
    :: i < u && at == 255 ->
        atomic { if :: slot[i] == 0 -> slot[i] = me + 1; at = i :: else -> skip fi }
        i++
    :: else -> break
    od;
    /* else reserve a new index */
    do
    :: at != 255 -> break
    :: else ->
        atomic {
            if
            :: used < NSLOT -> u = used; used++
            :: else -> u = 255
            fi
        };
        if
        :: u == 255 -> break   /* full: not possible with NSLOT = NPROC */
        :: else -> atomic { if :: slot[u] == 0 -> slot[u] = me + 1; at = u :: else -> skip fi }
        fi
    od;
    assert(at != 255);
    /* look for the name among the others */
    u = used;
    i = 0;
#if BUG != 1
    do
    :: i < u ->
        o = slot[i];
        if
#if BUG == 2
        :: i > at -> break   /* only the slots below one's own: a tie-break by index */
#endif
        :: i != at && o != 0 && (o - 1 == me || (o - 1 < 2 && me < 2)) ->
            atomic { if :: slot[at] == me + 1 -> slot[at] = 0 :: else -> skip fi };
            refused[me] = true;
            break
        :: else -> i++
        fi
    :: else -> break
    od;
#endif
    kept[me] = !refused[me];
    done++
}

#ifdef REMOVE
proctype remover()
{
    byte i = 0;
    /* waits for adder 2's breaker, then takes it out */
    do
    :: i < NSLOT ->
        atomic { if :: slot[i] == 3 -> slot[i] = 0; i = NSLOT :: else -> i++ fi }
    :: i >= NSLOT -> break
    od;
    done++
}
#endif

init {
    byte p;
    atomic {
        for (p : 0 .. NPROC - 1) { run adder(p) }
#ifdef REMOVE
        run remover();
#endif
    }
#ifdef REMOVE
    (done == NPROC + 1);
#else
    (done == NPROC);
#endif
    /* never two slots holding one name */
    byte i, j, held;
    for (i : 0 .. NSLOT - 1) {
        for (j : 0 .. NSLOT - 1) {
            assert(i == j || slot[i] == 0 || slot[j] == 0 ||
                   !(slot[i] == slot[j] || (slot[i] < 3 && slot[j] < 3)))
        }
    }
    /* a name of its own is never refused; refused: in no slot; kept: in one (unless removed) */
    for (p : 0 .. NPROC - 1) {
        assert(p < 2 || !refused[p]);
        held = 0;
        for (i : 0 .. NSLOT - 1) { if :: slot[i] == p + 1 -> held++ :: else -> skip fi }
#ifdef REMOVE
        assert(refused[p] -> held == 0 : (p == 2 || held == 1));
#else
        assert(refused[p] -> held == 0 : held == 1);
#endif
    }
}
