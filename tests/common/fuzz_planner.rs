// Planner invariants under event sequences the input chooses (included by fuzz_targets.rs).

/// Chunks of the fuzzed swarm's manifests (a small pool, so have-sets overlap).
const POOL: u32 = 24;
/// Node ids the input picks from; 0 is the master.
const IDS: u32 = 6;

fn pool_hash(i: u32) -> ChunkHash {
    ChunkHash::of(&i.to_le_bytes())
}

/// What the harness knows about the swarm, independently of the planner's bookkeeping.
struct Swarm {
    p: Planner,
    now: f64,
    online: HashMap<NodeId, NodeConfig>,
    manifest: HashMap<ChunkHash, u64>,
    issued: HashSet<TransferId>,
}

/// An event sequence chosen by the input, hostile ones included (events for unknown or ended
/// transfers, progress beyond the chunk size, time standing still or jumping, manifests that
/// drop chunks in flight, sources that lose what they serve). After every step the planner's
/// active orders must respect slots, endpoints and have-sets, and its per-node counters must
/// agree with its own order list.
pub fn planner_events(data: &[u8]) {
    let mut g = Gen::new(data);
    let mut s = Swarm {
        p: Planner::new(g.u64()),
        now: 0.0,
        online: HashMap::new(),
        manifest: HashMap::new(),
        issued: HashSet::new(),
    };
    s.new_manifest(&mut g);
    s.join(0, NodeConfig::new(true, 1 + g.below(4) as u32, 0), (0..POOL).map(pool_hash).collect());
    let mut steps = 0;
    while !g.is_done() && steps < 400 {
        steps += 1;
        s.step(&mut g);
        s.check();
    }
}

impl Swarm {
    fn new_manifest(&mut self, g: &mut Gen) {
        let mut chunks: Vec<(ChunkHash, u64)> = Vec::new();
        for i in 0..POOL {
            if g.below(4) != 0 {
                chunks.push((pool_hash(i), g.pick(&[1, 1000, 1 << 20, 1 << 30])));
            }
        }
        self.manifest = chunks.iter().copied().collect();
        self.p.handle(self.now, Event::NewManifest { chunks });
    }

    fn join(&mut self, node: NodeId, config: NodeConfig, has: Vec<ChunkHash>) {
        self.online.insert(node, config);
        self.p.handle(self.now, Event::Join { node, config, has });
    }

    fn some_id(&mut self, g: &mut Gen) -> TransferId {
        let active: Vec<TransferId> = self.p.orders().map(|o| o.id).collect();
        match g.below(4) {
            0 => g.u64() % 64,
            _ if !active.is_empty() => active[g.below(active.len())],
            _ => g.u64() % 64,
        }
    }

    fn chunks(&mut self, g: &mut Gen) -> Vec<ChunkHash> {
        (0..g.below(6)).map(|_| pool_hash(g.below(POOL as usize + 4) as u32)).collect()
    }

    fn step(&mut self, g: &mut Gen) {
        match g.below(12) {
            0 => {
                let node = 1 + g.below(IDS as usize - 1) as NodeId;
                let cfg = NodeConfig::new(false, g.below(4) as u32, g.below(4) as u32);
                let has = self.chunks(g);
                self.join(node, cfg, has);
            }
            1 => {
                let node = g.below(IDS as usize) as NodeId;
                self.online.remove(&node);
                self.p.handle(self.now, Event::Leave { node });
            }
            2 => {
                let (node, chunks) = (g.below(IDS as usize) as NodeId, self.chunks(g));
                self.p.handle(self.now, Event::Have { node, chunks });
            }
            3 => {
                let (node, chunks) = (g.below(IDS as usize) as NodeId, self.chunks(g));
                self.p.handle(self.now, Event::Lost { node, chunks });
            }
            4 => {
                let id = self.some_id(g);
                let any = g.u64();
                let bytes_done = g.pick(&[0, 1, 500, 1 << 20, u64::MAX, any]);
                self.p.handle(self.now, Event::Progress { id, bytes_done });
            }
            5 | 6 => {
                let id = self.some_id(g);
                self.p.handle(self.now, Event::Finished { id });
            }
            7 => {
                let id = self.some_id(g);
                let reason = g.pick(&[
                    FailReason::Stalled,
                    FailReason::TooSlow,
                    FailReason::BadData,
                    FailReason::SourceMissing,
                    FailReason::Other,
                ]);
                self.p.handle(self.now, Event::Failed { id, reason });
            }
            8 => self.new_manifest(g),
            9 => self.now += g.pick(&[0.0, 1e-9, 0.1, 1.0, 11.0, 1e6]),
            10 => {
                for o in self.p.check_timeouts_orders(self.now) {
                    self.assert_order_sane(&o, "aborted");
                }
            }
            _ => self.plan(),
        }
    }

    fn plan(&mut self) {
        let before: HashSet<(ChunkHash, NodeId)> = self.p.orders().map(|o| (o.chunk, o.to)).collect();
        for o in self.p.plan(self.now) {
            assert!(self.issued.insert(o.id), "transfer id {} reused: {o:?}", o.id);
            assert!(!before.contains(&(o.chunk, o.to)), "second transfer of a chunk to one node: {o:?}");
            self.assert_order_sane(&o, "new");
            assert!(self.p.node_has(o.from, &o.chunk), "source lacks the chunk: {o:?}");
            assert!(!self.p.node_has(o.to, &o.chunk), "destination has the chunk: {o:?}");
            assert_eq!(self.manifest.get(&o.chunk), Some(&o.size), "chunk not in the manifest or wrong size: {o:?}");
        }
    }

    fn assert_order_sane(&self, o: &Order, what: &str) {
        let from = self.online.get(&o.from).unwrap_or_else(|| panic!("{what} order from an offline node: {o:?}"));
        let to = self.online.get(&o.to).unwrap_or_else(|| panic!("{what} order to an offline node: {o:?}"));
        assert!(from.upload_slots > 0, "{what} order from a node without upload slots: {o:?}");
        assert!(!to.is_master && to.download_slots > 0, "{what} order to a node that takes none: {o:?}");
        assert_ne!(o.from, o.to, "{what} order to itself: {o:?}");
    }

    /// The active orders respect slots and endpoints, and the counters agree with them.
    fn check(&self) {
        let orders: Vec<Order> = self.p.orders().collect();
        assert_eq!(orders.len(), self.p.active_transfers(), "active count disagrees with the order list");
        let mut ups: HashMap<NodeId, u32> = HashMap::new();
        let mut downs: HashMap<NodeId, u32> = HashMap::new();
        let mut pairs = HashSet::new();
        for o in &orders {
            self.assert_order_sane(o, "active");
            assert!(pairs.insert((o.chunk, o.to)), "two active transfers of a chunk to one node: {o:?}");
            *ups.entry(o.from).or_default() += 1;
            *downs.entry(o.to).or_default() += 1;
        }
        for n in self.p.stats().nodes {
            let cfg = self.online.get(&n.id).unwrap_or_else(|| panic!("offline node {} in the stats", n.id));
            let (up, down) = (ups.get(&n.id).copied().unwrap_or(0), downs.get(&n.id).copied().unwrap_or(0));
            assert!(up <= cfg.upload_slots && down <= cfg.download_slots, "slots overcommitted at node {}", n.id);
            assert_eq!((n.uploads, n.downloads), (up, down), "slot counters of node {} disagree", n.id);
            let have = self.manifest.keys().filter(|h| self.p.node_has(n.id, h)).count() as u32;
            assert_eq!(n.have, have, "have count of node {} disagrees with its have-set", n.id);
            assert_eq!(n.complete, have as usize == self.manifest.len(), "completeness of node {}", n.id);
        }
    }
}
