// The FlinkCEP oracle of the differential test (docs/flink-diff.md).
//
// Reads a JSON-lines file of cases (tests/flink/cases.py writes them: a pattern as a
// tree, events, and the watermarks to emit after given events), builds one Flink
// `Pattern` per case and runs it on a local MiniCluster in event time: one job per batch
// of cases, each case with its own source (events with timestamps + its watermarks;
// the end of the source is watermark Long.MAX_VALUE), keyed by the event key, into
// `CEP.pattern(...).inEventTime()`. Writes one JSON line per case: the matches and the
// timed-out partial matches as {stage: [event index, ...], "@": time}, or "error" when
// Flink rejects the pattern.
//
// Two modes, the same CepOperator and NFA code:
//   minicluster  the cases as DataStream jobs on a local MiniCluster (slow: seconds per
//                job; a cross-check of the harness mode on a sample);
//   harness      each case through Flink's own CepOperator inside the keyed operator test
//                harness that Flink's CEPOperatorTest uses (processElement /
//                processWatermark, then watermark Long.MAX_VALUE): milliseconds a case.
//
// Usage: java -cp <flink jars>:<classes> FlinkOracle IN.jsonl OUT.jsonl [harness|minicluster]
//        [cases per job]

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.api.common.ExecutionConfig;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.cep.operator.CepOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.cep.CEP;
import org.apache.flink.cep.EventComparator;
import org.apache.flink.cep.functions.PatternProcessFunction;
import org.apache.flink.cep.functions.TimedOutPartialMatchHandler;
import org.apache.flink.cep.nfa.aftermatch.AfterMatchSkipStrategy;
import org.apache.flink.cep.nfa.compiler.NFACompiler;
import org.apache.flink.cep.pattern.Pattern;
import org.apache.flink.cep.pattern.WithinType;
import org.apache.flink.cep.pattern.conditions.IterativeCondition;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.MemorySize;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.DiscardingSink;
import org.apache.flink.streaming.api.functions.source.SourceFunction;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.util.Collector;

public class FlinkOracle {
    static final ObjectMapper JSON = new ObjectMapper();
    // case index -> output lines; written by the operators (same JVM), read by main
    static final Map<Integer, List<String>> OUT = new ConcurrentHashMap<>();

    /** One event: its case, index within the case, time, key and the fields t, v. */
    public static class Ev implements Serializable {
        public int c;
        public int i;
        public long ts;
        public String k;
        public String t;
        public long v;

        public Ev() {}
    }

    /** A case's events and watermarks (watermark wm[j] is emitted after event j). */
    static class CaseSource implements SourceFunction<Ev> {
        final ArrayList<Ev> events;
        final long[] wmAfter;

        CaseSource(ArrayList<Ev> events, long[] wmAfter) {
            this.events = events;
            this.wmAfter = wmAfter;
        }

        @Override
        public void run(SourceContext<Ev> ctx) {
            for (int j = 0; j < events.size(); j++) {
                Ev e = events.get(j);
                ctx.collectWithTimestamp(e, e.ts);
                if (wmAfter[j] != Long.MIN_VALUE) {
                    ctx.emitWatermark(new Watermark(wmAfter[j]));
                }
            }
        }

        @Override
        public void cancel() {}
    }

    /** A condition tree (see tests/flink/cases.py: Cond). */
    static class Cond extends IterativeCondition<Ev> {
        final String json;
        transient JsonNode node;

        Cond(JsonNode node) {
            this.json = node.toString();
        }

        @Override
        public boolean filter(Ev e, Context<Ev> ctx) throws Exception {
            if (node == null) {
                node = JSON.readTree(json);
            }
            return eval(node, e, ctx);
        }

        static boolean eval(JsonNode n, Ev e, Context<Ev> ctx) throws Exception {
            String op = n.get(0).asText();
            switch (op) {
                case "true":
                    return true;
                case "eq":
                    return e.t.equals(n.get(1).asText());
                case "in":
                    for (JsonNode x : n.get(1)) {
                        if (e.t.equals(x.asText())) return true;
                    }
                    return false;
                case "cmp":
                    return cmp(n.get(1).asText(), e.v, n.get(2).asLong());
                case "and":
                    return eval(n.get(1), e, ctx) && eval(n.get(2), e, ctx);
                case "or":
                    return eval(n.get(1), e, ctx) || eval(n.get(2), e, ctx);
                case "count_lt": {
                    long c = 0;
                    for (Ev x : ctx.getEventsForPattern(n.get(1).asText())) c++;
                    return c < n.get(2).asLong();
                }
                case "gt_last": { // v > coalesce(last(s).v, -1)
                    long last = -1;
                    for (Ev x : ctx.getEventsForPattern(n.get(1).asText())) last = x.v;
                    return e.v > last;
                }
                case "sum_le": { // coalesce(sum(s.v), 0) + v <= n
                    long s = 0;
                    for (Ev x : ctx.getEventsForPattern(n.get(1).asText())) s += x.v;
                    return s + e.v <= n.get(2).asLong();
                }
                case "gt_stage": { // v > s.v (false when s took nothing)
                    Ev first = null;
                    for (Ev x : ctx.getEventsForPattern(n.get(1).asText())) {
                        first = x;
                        break;
                    }
                    return first != null && e.v > first.v;
                }
                default:
                    throw new IllegalArgumentException("unknown condition " + op);
            }
        }

        static boolean cmp(String op, long a, long b) {
            switch (op) {
                case "<": return a < b;
                case "<=": return a <= b;
                case ">": return a > b;
                case ">=": return a >= b;
                case "==": return a == b;
                case "!=": return a != b;
                default: throw new IllegalArgumentException(op);
            }
        }
    }

    static AfterMatchSkipStrategy skip(JsonNode s) {
        String kind = s.get("kind").asText();
        switch (kind) {
            case "none": return AfterMatchSkipStrategy.noSkip();
            case "to_next": return AfterMatchSkipStrategy.skipToNext();
            case "past_last": return AfterMatchSkipStrategy.skipPastLastEvent();
            case "to_first": return AfterMatchSkipStrategy.skipToFirst(s.get("stage").asText());
            case "to_last": return AfterMatchSkipStrategy.skipToLast(s.get("stage").asText());
            default: throw new IllegalArgumentException(kind);
        }
    }

    @SuppressWarnings("unchecked")
    static Pattern<Ev, Ev> build(JsonNode steps, AfterMatchSkipStrategy skip) {
        Pattern<Ev, Ev> p = null;
        for (JsonNode st : steps) {
            String conn = st.get("conn").asText();
            if (st.has("group")) {
                Pattern<Ev, Ev> sub = build(st.get("group"), null);
                if (p == null) {
                    p = skip == null ? Pattern.begin(sub) : Pattern.begin(sub, skip);
                } else if (conn.equals("next")) {
                    p = p.next(sub);
                } else if (conn.equals("then")) {
                    p = p.followedBy(sub);
                } else if (conn.equals("then_any")) {
                    p = p.followedByAny(sub);
                } else {
                    throw new IllegalArgumentException("group after " + conn);
                }
            } else {
                String name = st.get("name").asText();
                if (p == null) {
                    p = skip == null ? Pattern.<Ev>begin(name) : Pattern.<Ev>begin(name, skip);
                } else {
                    switch (conn) {
                        case "next": p = p.next(name); break;
                        case "then": p = p.followedBy(name); break;
                        case "then_any": p = p.followedByAny(name); break;
                        case "not_next": p = p.notNext(name); break;
                        case "not_then": p = p.notFollowedBy(name); break;
                        default: throw new IllegalArgumentException(conn);
                    }
                }
                p = p.where(new Cond(st.get("where")));
            }
            JsonNode q = st.get("quant");
            if (q != null) {
                String kind = q.get("kind").asText();
                switch (kind) {
                    case "opt": p = p.optional(); break;
                    case "plus": p = p.oneOrMore(); break;
                    case "star": p = p.oneOrMore().optional(); break;
                    case "times": p = p.times(q.get("n").asInt()); break;
                    case "range": p = p.times(q.get("n").asInt(), q.get("m").asInt()); break;
                    case "atleast": p = p.timesOrMore(q.get("n").asInt()); break;
                    default: throw new IllegalArgumentException(kind);
                }
                if (q.path("optional").asBoolean(false)) p = p.optional();
                if (q.path("greedy").asBoolean(false)) p = p.greedy();
                if (q.path("consecutive").asBoolean(false)) p = p.consecutive();
                if (q.path("combinations").asBoolean(false)) p = p.allowCombinations();
            }
            if (st.has("until")) {
                p = p.until(new Cond(st.get("until")));
            }
            if (st.has("within")) {
                p = p.within(Duration.ofMillis(st.get("within").asLong()), WithinType.PREVIOUS_AND_CURRENT);
            }
        }
        return p;
    }

    static Pattern<Ev, Ev> buildCase(JsonNode pat) {
        Pattern<Ev, Ev> p = build(pat.get("steps"), skip(pat.get("skip")));
        if (pat.hasNonNull("within")) {
            p = p.within(Duration.ofMillis(pat.get("within").asLong()));
        }
        return p;
    }

    static String matchJson(Map<String, List<Ev>> m, long time, String kind) {
        ObjectNode o = JSON.createObjectNode();
        o.put("@", time);
        o.put("kind", kind);
        for (Map.Entry<String, List<Ev>> en : m.entrySet()) {
            ArrayNode a = o.putArray(en.getKey());
            for (Ev e : en.getValue()) a.add(e.i);
        }
        return o.toString();
    }

    static class Collect extends PatternProcessFunction<Ev, String>
            implements TimedOutPartialMatchHandler<Ev> {
        final int caseIdx;

        Collect(int caseIdx) {
            this.caseIdx = caseIdx;
        }

        @Override
        public void processMatch(Map<String, List<Ev>> m, Context ctx, Collector<String> out) {
            OUT.get(caseIdx).add(matchJson(m, ctx.timestamp(), "match"));
        }

        @Override
        public void processTimedOutMatch(Map<String, List<Ev>> m, Context ctx) {
            OUT.get(caseIdx).add(matchJson(m, ctx.timestamp(), "timeout"));
        }
    }

    static class ByV implements EventComparator<Ev> {
        @Override
        public int compare(Ev a, Ev b) {
            return Long.compare(a.v, b.v);
        }
    }

    static class ByKey implements KeySelector<Ev, String> {
        @Override
        public String getKey(Ev e) {
            return e.k;
        }
    }

    public static void main(String[] args) throws Exception {
        List<JsonNode> cases = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(Paths.get(args[0]), StandardCharsets.UTF_8)) {
            String line;
            while ((line = r.readLine()) != null) {
                if (!line.isBlank()) cases.add(JSON.readTree(line));
            }
        }
        String mode = args.length > 2 ? args[2] : "harness";
        int perJob = args.length > 3 ? Integer.parseInt(args[3]) : 20;
        String[] errors = new String[cases.size()];
        if (mode.equals("harness")) {
            long t0 = System.nanoTime();
            for (int ci = 0; ci < cases.size(); ci++) {
                OUT.put(ci, Collections.synchronizedList(new ArrayList<>()));
                final int idx = ci;
                final String[] err = new String[1];
                Thread t = new Thread(() -> {
                    try {
                        runHarness(idx, cases.get(idx));
                    } catch (Throwable ex) {
                        err[0] = ex.getClass().getSimpleName() + ": " + ex.getMessage();
                    }
                });
                t.start();
                t.join(LIMIT_MS);
                if (t.isAlive()) { // a combinatorial case: not a verdict, left out
                    stopThread(t);
                    errors[ci] = "oracle-timeout";
                    OUT.get(ci).clear();
                } else {
                    errors[ci] = err[0];
                }
            }
            System.err.printf("flink-oracle: %d cases (harness), %.1fs%n", cases.size(),
                    (System.nanoTime() - t0) / 1e9);
            write(args[1], cases, errors);
            return;
        }
        Configuration conf = new Configuration();
        conf.set(TaskManagerOptions.NETWORK_MEMORY_MIN, MemorySize.parse("512m"));
        conf.set(TaskManagerOptions.NETWORK_MEMORY_MAX, MemorySize.parse("512m"));
        long t0 = System.nanoTime();
        for (int from = 0; from < cases.size(); from += perJob) {
            StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(1, conf);
            int added = 0;
            for (int ci = from; ci < Math.min(cases.size(), from + perJob); ci++) {
                JsonNode c = cases.get(ci);
                Pattern<Ev, Ev> pattern;
                try {
                    pattern = buildCase(c.get("pattern"));
                    NFACompiler.compileFactory(pattern, true); // Flink's own validation
                } catch (Exception ex) {
                    errors[ci] = ex.getClass().getSimpleName() + ": " + ex.getMessage();
                    continue;
                }
                ArrayList<Ev> evs = events(ci, c);
                long[] wm = watermarks(c);
                OUT.put(ci, Collections.synchronizedList(new ArrayList<>()));
                DataStream<Ev> src = env.addSource(new CaseSource(evs, wm), "case-" + ci);
                boolean orderByV = c.get("pattern").path("order_by_v").asBoolean(false);
                DataStream<Ev> keyed = src.keyBy(new ByKey());
                (orderByV ? CEP.pattern(keyed, pattern, new ByV()) : CEP.pattern(keyed, pattern))
                        .inEventTime()
                        .process(new Collect(ci))
                        .addSink(new DiscardingSink<>());
                added++;
            }
            if (added > 0) {
                env.execute("flink-oracle-" + from);
            }
            System.err.printf("flink-oracle: %d/%d cases, %.1fs%n",
                    Math.min(cases.size(), from + perJob), cases.size(), (System.nanoTime() - t0) / 1e9);
        }
        write(args[1], cases, errors);
    }

    static final long LIMIT_MS = 3000;

    @SuppressWarnings({"deprecation", "removal"})
    static void stopThread(Thread t) throws InterruptedException {
        t.stop();
        t.join();
    }

    static ArrayList<Ev> events(int ci, JsonNode c) {
        ArrayList<Ev> evs = new ArrayList<>();
        JsonNode events = c.get("events");
        for (int j = 0; j < events.size(); j++) {
            JsonNode e = events.get(j);
            Ev ev = new Ev();
            ev.c = ci;
            ev.i = j;
            ev.ts = e.get("ts").asLong();
            ev.k = e.path("k").asText("k");
            ev.t = e.get("t").asText();
            ev.v = e.get("v").asLong();
            evs.add(ev);
        }
        return evs;
    }

    static long[] watermarks(JsonNode c) {
        long[] wm = new long[c.get("events").size()];
        java.util.Arrays.fill(wm, Long.MIN_VALUE);
        for (JsonNode w : c.path("watermarks")) {
            wm[w.get(0).asInt()] = w.get(1).asLong();
        }
        return wm;
    }

    @SuppressWarnings("deprecation")
    static void runHarness(int ci, JsonNode c) throws Exception {
        Pattern<Ev, Ev> pattern = buildCase(c.get("pattern"));
        boolean orderByV = c.get("pattern").path("order_by_v").asBoolean(false);
        boolean timeouts = true;
        CepOperator<Ev, String, String> op = new CepOperator<>(
                TypeInformation.of(Ev.class).createSerializer(new ExecutionConfig()),
                false,
                NFACompiler.compileFactory(pattern, timeouts),
                orderByV ? new ByV() : null,
                pattern.getAfterMatchSkipStrategy(),
                new Collect(ci),
                null);
        KeyedOneInputStreamOperatorTestHarness<String, Ev, String> h =
                new KeyedOneInputStreamOperatorTestHarness<>(op, new ByKey(), Types.STRING);
        try {
            h.open();
            ArrayList<Ev> evs = events(ci, c);
            long[] wm = watermarks(c);
            for (int j = 0; j < evs.size(); j++) {
                h.processElement(new StreamRecord<>(evs.get(j), evs.get(j).ts));
                if (wm[j] != Long.MIN_VALUE) {
                    h.processWatermark(new Watermark(wm[j]));
                }
            }
            h.processWatermark(new Watermark(Long.MAX_VALUE));
        } finally {
            h.close();
        }
    }

    static void write(String path, List<JsonNode> cases, String[] errors) throws Exception {
        try (BufferedWriter w = Files.newBufferedWriter(Paths.get(path), StandardCharsets.UTF_8)) {
            for (int ci = 0; ci < cases.size(); ci++) {
                ObjectNode o = JSON.createObjectNode();
                o.set("id", cases.get(ci).get("id"));
                if (errors[ci] != null) {
                    o.put("error", errors[ci]);
                } else {
                    ArrayNode out = o.putArray("out");
                    for (String s : OUT.get(ci)) out.add(JSON.readTree(s));
                }
                w.write(o.toString());
                w.newLine();
            }
        }
    }
}
